"""Pre-training corpus for the demo base: procedural images and augmented crops of *training* photos.

Nothing here touches the val/test/unseen photos or any score. Targets are measured pixel statistics
per image region (what a perception model should be able to read off an image), so the corpus needs
no labels at all.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .demo_data import SEEN_DEGRADATIONS, degrade, random_crop

STAT_NAMES = ("brightness", "contrast", "log_sharpness", "log_noise", "log_colourfulness", "saturation")


def region_stats(img: Image.Image, grid: int) -> np.ndarray:
    """(grid*grid + 1, K) statistics: one row per grid cell (row-major), then the whole image."""
    rgb = np.asarray(img.convert("RGB"), dtype=np.float64)
    lum = rgb @ np.array([0.299, 0.587, 0.114])
    pad = np.pad(lum, 1, mode="reflect")
    lap = np.abs(-4 * pad[1:-1, 1:-1] + pad[:-2, 1:-1] + pad[2:, 1:-1] + pad[1:-1, :-2] + pad[1:-1, 2:])
    k = (pad[:-2, :-2] - 2 * pad[:-2, 1:-1] + pad[:-2, 2:] - 2 * pad[1:-1, :-2] + 4 * pad[1:-1, 1:-1]
         - 2 * pad[1:-1, 2:] + pad[2:, :-2] - 2 * pad[2:, 1:-1] + pad[2:, 2:])
    noise = np.abs(k) * np.sqrt(np.pi / 2) / 6
    rg = rgb[..., 0] - rgb[..., 1]
    yb = 0.5 * (rgb[..., 0] + rgb[..., 1]) - rgb[..., 2]
    mx, mn = rgb.max(-1), rgb.min(-1)
    sat = np.where(mx > 0, (mx - mn) / np.maximum(mx, 1e-6), 0.0)

    def stats(sl: tuple[slice, slice]) -> list[float]:
        r, y = rg[sl], yb[sl]
        colour = np.hypot(r.std(), y.std()) + 0.3 * np.hypot(r.mean(), y.mean())
        return [lum[sl].mean() / 255, lum[sl].std() / 255, np.log1p(lap[sl].mean()), np.log1p(noise[sl].mean()),
                np.log1p(colour), sat[sl].mean()]

    h, w = lum.shape
    rows = []
    for i in range(grid):
        for j in range(grid):
            rows.append(stats((slice(i * h // grid, (i + 1) * h // grid), slice(j * w // grid, (j + 1) * w // grid))))
    rows.append(stats((slice(None), slice(None))))
    return np.asarray(rows, dtype=np.float32)


def _fractal_noise(size: int, rng: np.random.Generator, beta: float) -> np.ndarray:
    """1/f^beta noise: natural images have roughly this power spectrum."""
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.fftfreq(size)[None, :]
    f = np.sqrt(fx**2 + fy**2)
    f[0, 0] = 1.0
    spec = (rng.normal(size=(size, size)) + 1j * rng.normal(size=(size, size))) / f**beta
    field = np.real(np.fft.ifft2(spec))
    return (field - field.min()) / (np.ptp(field) + 1e-9)


def procedural_image(size: int, rng: np.random.Generator) -> Image.Image:
    """A random natural-image-like scene: coloured 1/f fields, soft blobs, edges and stripes."""
    base = np.stack([_fractal_noise(size, rng, rng.uniform(0.8, 1.6)) for _ in range(3)], -1)
    mix = rng.dirichlet(np.ones(3) * 0.7, size=3)
    img = base @ mix.T
    yy, xx = np.mgrid[0:size, 0:size] / size
    for _ in range(int(rng.integers(0, 5))):
        cy, cx, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.35)
        mask = np.clip(1 - np.hypot(yy - cy, xx - cx) / r, 0, 1) ** rng.uniform(0.2, 2)
        img = img * (1 - mask[..., None]) + rng.uniform(0, 1, 3) * mask[..., None]
    if rng.random() < 0.4:
        angle, freq = rng.uniform(0, np.pi), rng.uniform(2, 20)
        stripes = 0.5 + 0.5 * np.sin(2 * np.pi * freq * (np.cos(angle) * xx + np.sin(angle) * yy))
        img = img * (1 - 0.4 * stripes[..., None]) + 0.4 * stripes[..., None] * rng.uniform(0, 1, 3)
    if rng.random() < 0.5:
        img = img * rng.uniform(0.4, 1.0) + rng.uniform(0.0, 0.4)
    return Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8))


def corpus_image(size: int, photos: list[Image.Image], rng: np.random.Generator, photo_share: float) -> Image.Image:
    """One corpus image: procedural or a random crop of a training photo, then random seen degradations."""
    if photos and rng.random() < photo_share:
        img = random_crop(photos[int(rng.integers(len(photos)))], size, rng, min_frac=0.2)
    else:
        img = procedural_image(size, rng)
    for kind in rng.choice(SEEN_DEGRADATIONS, size=int(rng.integers(0, 4)), replace=False):
        img = degrade(img, str(kind), float(rng.uniform(0, 1)), rng)
    return img
