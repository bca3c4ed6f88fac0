"""Confidence intervals over training seeds and clustered test images (a hierarchical bootstrap).

A trained model's number moves with its training seed as much as with the test images, and the demo's
test crops come from a few photos, so crops of one photo are not independent draws. Each replicate
draws the seeds with replacement, then the source photos (clusters) with replacement, then crops within
each drawn photo with replacement, and averages the statistic over the drawn seeds. Paired comparisons
reuse one draw for both models (the same seeds, the same images), so what they share cancels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy.stats import rankdata

Stat = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (pred[B, n], mos[B, n]) -> value per replicate [B]


def _rowwise_pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    x = x - x.mean(axis=1, keepdims=True)
    y = y - y.mean(axis=1, keepdims=True)
    den = np.sqrt((x * x).sum(axis=1) * (y * y).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (x * y).sum(axis=1) / np.where(den > 0, den, 1.0), np.nan)


def srcc_rows(pred: np.ndarray, mos: np.ndarray) -> np.ndarray:
    """Spearman correlation of each row pair (ties get average ranks, as scipy's spearmanr)."""
    return _rowwise_pearson(rankdata(pred, axis=1), rankdata(mos, axis=1))


def plcc_rows(pred: np.ndarray, mos: np.ndarray) -> np.ndarray:
    return _rowwise_pearson(pred, mos)


def resample_indices(clusters: Sequence[str], n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """[n_boot, n] image indices: clusters drawn with replacement, then members within each drawn cluster.

    Every replicate has exactly n indices when the clusters are of equal size (the demo's crops per photo);
    otherwise replicates are trimmed or padded by members of their own drawn clusters to length n, so
    the rows stack into one array.
    """
    labels = np.asarray(clusters)
    n = len(labels)
    members = [np.flatnonzero(labels == c) for c in dict.fromkeys(labels.tolist())]
    out = np.empty((n_boot, n), dtype=int)
    for b in range(n_boot):
        drawn = rng.integers(0, len(members), size=len(members))
        idx = np.concatenate([rng.choice(members[c], size=len(members[c]), replace=True) for c in drawn])
        if len(idx) != n:
            idx = rng.choice(idx, size=n, replace=len(idx) < n)
        out[b] = idx
    return out


def seed_draws(n_seeds: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """[n_boot, n_seeds] seed indices drawn with replacement (one seed: always that seed)."""
    return rng.integers(0, n_seeds, size=(n_boot, n_seeds))


def mean_over_drawn(per_seed: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """[B] replicate values from [B, S] per-seed values: the mean over each replicate's drawn seeds."""
    return np.take_along_axis(per_seed, draws, axis=1).mean(axis=1)


def interval(values: np.ndarray, ci: float) -> list[float] | None:
    """Percentile interval of the finite replicates (None when fewer than half are finite)."""
    finite = values[np.isfinite(values)]
    if len(finite) < max(1, len(values) // 2):
        return None
    alpha = (1 - ci) / 2
    return [float(np.quantile(finite, alpha)), float(np.quantile(finite, 1 - alpha))]


def two_sided_p(diffs: np.ndarray) -> float | None:
    """Bootstrap p-value of a difference against zero: twice the smaller tail."""
    finite = diffs[np.isfinite(diffs)]
    if not len(finite):
        return None
    return float(min(1.0, 2 * min((finite <= 0).mean(), (finite >= 0).mean())))


def pair_weights(idx: np.ndarray, n_images: int, ia: np.ndarray, ib: np.ndarray) -> np.ndarray:
    """[B, n_pairs] weight of each pair in each replicate: how often both its images were drawn."""
    counts = np.stack([np.bincount(row, minlength=n_images) for row in idx])
    return counts[:, ia] * counts[:, ib]


def weighted_accuracy(hits: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per replicate: the weighted share of pair hits (NaN when no pair survived the draw)."""
    total = weights.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (weights * hits).sum(axis=1) / np.where(total > 0, total, 1), np.nan)
