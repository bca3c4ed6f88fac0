"""Correlation and ranking metrics with bootstrap confidence intervals.

Every function returns None instead of raising when a metric is undefined (too few rows, constant
predictions), so a degenerate model gives `null` in metrics.json, not a crash.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

MIN_ROWS = 3


def _ok(pred: np.ndarray, mos: np.ndarray) -> bool:
    return len(pred) >= MIN_ROWS and np.ptp(pred) > 0 and np.ptp(mos) > 0


def _finite(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def srcc(pred: np.ndarray, mos: np.ndarray) -> float | None:
    return _finite(stats.spearmanr(pred, mos).statistic) if _ok(pred, mos) else None


def plcc(pred: np.ndarray, mos: np.ndarray) -> float | None:
    return _finite(stats.pearsonr(pred, mos).statistic) if _ok(pred, mos) else None


def krcc(pred: np.ndarray, mos: np.ndarray) -> float | None:
    return _finite(stats.kendalltau(pred, mos, variant="b").statistic) if _ok(pred, mos) else None


def logistic4(x: np.ndarray, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    """VQEG's monotonic 4-parameter logistic used to map objective scores onto MOS before PLCC."""
    return (b1 - b2) / (1 + np.exp(-(x - b3) / (abs(b4) + 1e-12))) + b2


def fit_logistic4(pred: np.ndarray, mos: np.ndarray) -> np.ndarray | None:
    """Least-squares fit constrained to be increasing (b1 >= b2), so a model that ranks backwards
    cannot earn a positive PLCC from a flipped curve."""
    from scipy.optimize import curve_fit

    def rising(x: np.ndarray, b2: float, span: float, b3: float, b4: float) -> np.ndarray:
        return logistic4(x, b2 + span, b2, b3, b4)

    p0 = [float(mos.min()), float(np.ptp(mos)) or 1.0, float(np.mean(pred)), float(np.std(pred)) or 1.0]
    bounds = ([-np.inf, 0.0, -np.inf, 1e-9], [np.inf, np.inf, np.inf, np.inf])
    try:
        (b2, span, b3, b4), _ = curve_fit(rising, pred, mos, p0=p0, bounds=bounds, maxfev=20000)
    except (RuntimeError, ValueError):
        return None
    params = np.array([b2 + span, b2, b3, b4])
    return params if np.all(np.isfinite(params)) else None


def plcc_logistic(pred: np.ndarray, mos: np.ndarray) -> float | None:
    """PLCC after the 4-parameter logistic fit (labelled as such in reports; not the raw PLCC)."""
    if not _ok(pred, mos) or len(pred) < 5:
        return None
    params = fit_logistic4(pred, mos)
    if params is None:
        return None
    fitted = logistic4(pred, *params)
    # A fit that collapses to a near-constant (e.g. for a backwards ranking) has no defined PLCC.
    return plcc(fitted, mos) if np.ptp(fitted) > 1e-3 * np.ptp(mos) else None


def bootstrap_ci(pred: np.ndarray, mos: np.ndarray, fn: Any, n_boot: int, ci: float, seed: int) -> list[float] | None:
    """Percentile bootstrap over images."""
    if not _ok(pred, mos) or n_boot <= 0:
        return None
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(pred), size=(n_boot, len(pred)))
    vals = [fn(pred[i], mos[i]) for i in idx]
    vals = np.array([v for v in vals if v is not None])
    if len(vals) < n_boot // 2:
        return None
    alpha = (1 - ci) / 2
    return [round(float(np.quantile(vals, alpha)), 4), round(float(np.quantile(vals, 1 - alpha)), 4)]


def _pair_hits(
    pred_by_id: dict[str, float], pairs: Sequence[tuple[str, str, float]], mos_by_id: dict[str, float]
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """(image ids, pair → index of a, of b, hit in {0, 0.5, 1}) over the pairs both images of which are scored."""
    ids: dict[str, int] = {}
    ia, ib, hits = [], [], []
    for a, b, _ in pairs:
        if a not in pred_by_id or b not in pred_by_id or mos_by_id[a] == mos_by_id[b]:
            continue
        dm, dp = mos_by_id[a] - mos_by_id[b], pred_by_id[a] - pred_by_id[b]
        ia.append(ids.setdefault(a, len(ids)))
        ib.append(ids.setdefault(b, len(ids)))
        hits.append(0.5 if dp == 0 else float((dp > 0) == (dm > 0)))
    return list(ids), np.asarray(ia, dtype=int), np.asarray(ib, dtype=int), np.asarray(hits, dtype=float)


def pairwise_accuracy(
    pred_by_id: dict[str, float], pairs: Sequence[tuple[str, str, float]], mos_by_id: dict[str, float]
) -> tuple[float | None, int]:
    """Share of pairs ordered as their MOS (ties in prediction count half); pairs with a missing image are skipped."""
    hits = _pair_hits(pred_by_id, pairs, mos_by_id)[3]
    return (round(float(hits.mean()), 4) if len(hits) else None), len(hits)


def pairwise_accuracy_ci(
    pred_by_id: dict[str, float],
    pairs: Sequence[tuple[str, str, float]],
    mos_by_id: dict[str, float],
    *,
    n_boot: int,
    ci: float,
    seed: int,
    other_by_id: dict[str, float] | None = None,
) -> list[float] | None:
    """Bootstrap CI of pairwise accuracy (or, with `other_by_id`, of accuracy minus the other model's on the
    same pairs), resampling images, not pairs: pairs share images, so a per-pair interval is too narrow.
    A resampled image drawn k times weighs its pairs k-fold (pair weight = count_a × count_b)."""
    if n_boot <= 0:
        return None
    ids, ia, ib, hits = _pair_hits(pred_by_id, pairs, mos_by_id)
    if other_by_id is not None:
        oids, oa, ob, ohits = _pair_hits(other_by_id, pairs, mos_by_id)
        if (oids, oa.tolist(), ob.tolist()) != (ids, ia.tolist(), ib.tolist()):
            return None  # the two models did not score the same images: no paired difference
        hits = hits - ohits
    if len(hits) < MIN_ROWS:
        return None
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(n_boot):
        counts = np.bincount(rng.integers(0, len(ids), size=len(ids)), minlength=len(ids))
        w = counts[ia] * counts[ib]
        if w.sum() > 0:
            vals.append(float((w * hits).sum() / w.sum()))
    if len(vals) < n_boot // 2:
        return None
    alpha = (1 - ci) / 2
    return [round(float(np.quantile(vals, alpha)), 4), round(float(np.quantile(vals, 1 - alpha)), 4)]


def summarise(
    pred: np.ndarray,
    mos: np.ndarray,
    *,
    n_boot: int,
    ci: float,
    seed: int,
    threshold: float,
    text_level_mos: np.ndarray | None = None,
) -> dict[str, Any]:
    def r(x: float | None) -> float | None:
        return None if x is None else round(x, 4)

    out: dict[str, Any] = {
        "n": int(len(pred)),
        "srcc": r(srcc(pred, mos)),
        "srcc_ci": bootstrap_ci(pred, mos, srcc, n_boot, ci, seed),
        "plcc": r(plcc(pred, mos)),
        "plcc_ci": bootstrap_ci(pred, mos, plcc, n_boot, ci, seed + 1),
        "krcc": r(krcc(pred, mos)),
        "plcc_logistic": r(plcc_logistic(pred, mos)),
        "rmse": r(float(np.sqrt(np.mean((pred - mos) ** 2)))) if len(pred) else None,
        "mean_bias": r(float(np.mean(pred) - np.mean(mos))) if len(pred) else None,
        "pred_std": r(float(np.std(pred))) if len(pred) else None,
        "binary_acc": r(float(np.mean((pred >= threshold) == (mos >= threshold)))) if len(pred) else None,
    }
    if text_level_mos is not None:
        have = ~np.isnan(text_level_mos)
        out["text_level_rate"] = r(float(have.mean())) if len(have) else None
        if have.sum() >= MIN_ROWS:
            # Agreement between the level the model writes and its probability-weighted score.
            out["text_vs_weighted_mae"] = r(float(np.mean(np.abs(text_level_mos[have] - pred[have]))))
            out["text_level_srcc"] = r(srcc(text_level_mos[have], mos[have]))
        else:
            out["text_vs_weighted_mae"] = out["text_level_srcc"] = None
    return out
