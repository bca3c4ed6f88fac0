"""Pixel measurements shared by the offline critic, the API stand-in and the demo base's pre-training corpus."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601 luma weights


def rgb_array(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float64)


def luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb @ LUMA


def laplacian(lum: np.ndarray) -> np.ndarray:
    """The 4-neighbour Laplacian on the interior pixels."""
    return -4 * lum[1:-1, 1:-1] + lum[:-2, 1:-1] + lum[2:, 1:-1] + lum[1:-1, :-2] + lum[1:-1, 2:]


def noise_response(lum: np.ndarray) -> np.ndarray:
    """Immerkær's Laplacian-difference kernel: it cancels smooth structure, leaving mostly noise."""
    return (
        lum[:-2, :-2] - 2 * lum[:-2, 1:-1] + lum[:-2, 2:]
        - 2 * lum[1:-1, :-2] + 4 * lum[1:-1, 1:-1] - 2 * lum[1:-1, 2:]
        + lum[2:, :-2] - 2 * lum[2:, 1:-1] + lum[2:, 2:]
    )  # fmt: skip


def opponent_channels(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hasler–Süsstrunk's red-green and yellow-blue opponent channels."""
    return rgb[..., 0] - rgb[..., 1], 0.5 * (rgb[..., 0] + rgb[..., 1]) - rgb[..., 2]


@dataclass(frozen=True)
class ImageProperties:
    brightness: float  # mean luminance, 0–1
    contrast: float  # std of luminance, 0–1
    sharpness: float  # mean |Laplacian| of luminance (0–255 scale)
    noise: float  # robust noise sigma estimate (0–255 scale)
    colourfulness: float  # Hasler–Süsstrunk colourfulness (0–255 scale)

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in asdict(self).items()}


def measure(image: Image.Image) -> ImageProperties:
    """The five properties the critics describe."""
    rgb = rgb_array(image)
    lum = luminance(rgb)
    rg, yb = opponent_channels(rgb)
    return ImageProperties(
        brightness=float(lum.mean() / 255),
        contrast=float(lum.std() / 255),
        sharpness=float(np.abs(laplacian(lum)).mean()),
        noise=float(np.sqrt(np.pi / 2) * np.mean(np.abs(noise_response(lum))) / 6),
        colourfulness=float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())),
    )
