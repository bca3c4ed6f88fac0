"""Pre-training corpus: degraded crops of the train photos, their captions and the pixel statistics the heads regress."""

from __future__ import annotations

from typing import Any

import numpy as np

from aesthetic_llm.critic import describe_properties, rule_of_thumb_level, write_critique
from aesthetic_llm.data.demo import SEEN_DEGRADATIONS, degrade, is_grayscale, random_crop, reference_crop
from aesthetic_llm.measure import luminance, measure, noise_response, opponent_channels, rgb_array

N_REGION_STATS = 6
N_GLOBAL_STATS = 14
N_DAMAGE_STATS = 10


def region_stats(image: Any, grid: int = 4) -> np.ndarray:
    """grid x grid regions (row-major, the merged image tokens' order) x 6 measured statistics."""
    rgb = rgb_array(image) / 255.0
    lum = luminance(rgb)
    grad = np.zeros_like(lum)
    grad[:, 1:] += np.abs(np.diff(lum, axis=1))
    grad[1:] += np.abs(np.diff(lum, axis=0))
    h, w = lum.shape
    half = lum[: h // 2 * 2, : w // 2 * 2].reshape(h // 2, 2, w // 2, 2).mean((1, 3))
    grad2 = np.zeros_like(half)
    grad2[:, 1:] += np.abs(np.diff(half, axis=1))
    grad2[1:] += np.abs(np.diff(half, axis=0))
    rg, yb = opponent_channels(rgb)

    def pool(x: np.ndarray) -> np.ndarray:
        rh, rw = x.shape[0] // grid, x.shape[1] // grid
        return x[: rh * grid, : rw * grid].reshape(grid, rh, grid, rw).mean((1, 3))

    mean = pool(lum)
    feats = [
        mean,
        np.sqrt(np.maximum(pool(lum**2) - mean**2, 0.0)),
        pool(grad),
        pool(grad2),
        np.sqrt(pool(rg**2)),
        np.sqrt(pool(yb**2)),
    ]
    return np.stack([f.reshape(-1) for f in feats], axis=-1).astype(np.float32)


def global_stats(image: Any) -> np.ndarray:
    """14 whole-image measurements: exposure, clipping, gradient energy at 3 scales and their ratios,
    a noise estimate, colourfulness, JPEG blockiness (energies log-compressed)."""
    rgb = rgb_array(image)
    lum = luminance(rgb)
    energies = []
    for k in (1, 2, 4):
        h, w = lum.shape[0] // k * k, lum.shape[1] // k * k
        small = lum[:h, :w].reshape(h // k, k, w // k, k).mean((1, 3))
        energies.append(np.abs(np.diff(small, axis=0)).mean() + np.abs(np.diff(small, axis=1)).mean())
    resp = noise_response(lum)
    rg, yb = opponent_channels(rgb)
    col_diff = np.abs(np.diff(lum, axis=1)).mean(0)
    feats = [
        lum.mean() / 255,
        lum.std() / 255,
        (lum < 10).mean(),
        (lum > 245).mean(),
        *[np.log1p(e) for e in energies],
        energies[0] / (energies[1] + 1e-6),
        energies[1] / (energies[2] + 1e-6),
        np.log1p(np.median(np.abs(resp))),
        np.log1p(np.abs(resp).mean()),
        np.log1p(np.hypot(rg.std(), yb.std())),
        np.log1p(np.hypot(rg.mean(), yb.mean())),
        col_diff[7::8].mean() / (col_diff.mean() + 1e-6),
    ]
    return np.asarray(feats, dtype=np.float32)


def _ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean structural similarity of two luminance images (7x7 uniform windows, 0-255 range)."""
    from scipy.ndimage import uniform_filter

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_a, mu_b = uniform_filter(a, 7), uniform_filter(b, 7)
    var_a = uniform_filter(a * a, 7) - mu_a**2
    var_b = uniform_filter(b * b, 7) - mu_b**2
    cov = uniform_filter(a * b, 7) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(s[3:-3, 3:-3].mean())


def damage_stats(clean: Any, damaged: Any, damaged_global: np.ndarray | None = None) -> np.ndarray:
    """10 full-reference measurements of what the degradations did to the clean crop: detail kept at
    3 scales, residual and high-frequency residual energy, SSIM, exposure shift, contrast, colour and
    blockiness change. Content-invariant by construction (ratios and differences against the clean
    crop), so a blind head regressing them must learn to see damage rather than content — the
    synthetic-distortion pre-training of blind IQA (RankIQA, DB-CNN)."""
    a = global_stats(clean)
    b = global_stats(damaged) if damaged_global is None else damaged_global
    la = np.asarray(clean.convert("L"), dtype=np.float64)
    lb = np.asarray(damaged.convert("L"), dtype=np.float64)
    resid = lb - la
    hp = resid - 0.25 * (np.roll(resid, 1, 0) + np.roll(resid, -1, 0) + np.roll(resid, 1, 1) + np.roll(resid, -1, 1))
    feats = [
        b[4] - a[4],  # log gradient energy, full resolution
        b[5] - a[5],  # ... at 1/2
        b[6] - a[6],  # ... at 1/4
        np.log1p(resid.std()),
        np.log1p(np.abs(hp).mean()),
        _ssim(la, lb),
        b[0] - a[0],  # exposure shift
        np.log((b[1] + 1e-3) / (a[1] + 1e-3)),  # contrast ratio
        b[11] - a[11],  # log colourfulness change
        b[13] - a[13],  # blockiness change
    ]
    return np.asarray(feats, dtype=np.float32)


def corpus_image(photo: Any, size: int, rng: np.random.Generator, max_degradations: int) -> tuple[Any, Any]:
    """One corpus image and its clean crop: a (reference or raw) crop with 0..max_degradations random
    seen degradations."""
    clean = reference_crop(photo, size, rng) if rng.random() < 0.5 else random_crop(photo, size, rng)
    img = clean
    kinds = [k for k in SEEN_DEGRADATIONS if not (k == "colour" and is_grayscale(photo))]
    n = int(rng.integers(0, max_degradations + 1))
    for kind in rng.choice(kinds, size=n, replace=False):
        img = degrade(img, str(kind), float(rng.uniform(0.0, 1.0)), rng)
    return img, clean


def build_corpus(
    photos: list[Any],
    n: int,
    size: int,
    seed: int,
    max_degradations: int,
    rate_fraction: float,
    num_levels: int,
) -> tuple[list[Any], list[tuple[bool, str]], np.ndarray, np.ndarray, np.ndarray]:
    """Images, (is_rating_task, answer) pairs, region, whole-image and damage statistics."""
    images, answers, stats, whole, damage = [], [], [], [], []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        img, clean = corpus_image(photos[i % len(photos)], size, rng, max_degradations)
        props = measure(img)
        rate = bool(rng.random() < rate_fraction)
        answer = (
            write_critique(props, rule_of_thumb_level(props, num_levels), num_levels)
            if rate
            else describe_properties(props)
        )
        images.append(img)
        answers.append((rate, answer))
        stats.append(region_stats(img, grid=max(1, size // 28)))  # one region per merged 28-px image token
        whole.append(global_stats(img))
        damage.append(damage_stats(clean, img, whole[-1]))
    return images, answers, np.stack(stats), np.stack(whole), np.stack(damage)
