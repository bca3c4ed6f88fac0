"""Point metrics of one model's predictions: correlations, errors, bias, hard-pair accuracy.

Every function returns None instead of raising when a metric is undefined (too few rows, constant
predictions), so a degenerate model gives `null` in metrics.json, not a crash. Values keep full
precision; rounding happens in rendered tables only. Intervals: seed_bootstrap.py.
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


def pair_hits(
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
    hits = pair_hits(pred_by_id, pairs, mos_by_id)[3]
    return (float(hits.mean()) if len(hits) else None), len(hits)


def summarise(
    pred: np.ndarray, mos: np.ndarray, *, threshold: float, text_level_mos: np.ndarray | None = None
) -> dict[str, Any]:
    """Every point metric of one prediction vector (full precision)."""
    some = len(pred) > 0
    out: dict[str, Any] = {
        "n": int(len(pred)),
        "srcc": srcc(pred, mos),
        "plcc": plcc(pred, mos),
        "krcc": krcc(pred, mos),
        "plcc_logistic": plcc_logistic(pred, mos),
        "rmse": float(np.sqrt(np.mean((pred - mos) ** 2))) if some else None,
        "mean_bias": float(np.mean(pred) - np.mean(mos)) if some else None,
        "pred_std": float(np.std(pred)) if some else None,
        "binary_acc": float(np.mean((pred >= threshold) == (mos >= threshold))) if some else None,
    }
    if text_level_mos is not None:
        have = ~np.isnan(text_level_mos)
        out["text_level_rate"] = float(have.mean()) if len(have) else None
        if have.sum() >= MIN_ROWS:
            # Agreement between the level the model writes and its probability-weighted score.
            out["text_vs_weighted_mae"] = float(np.mean(np.abs(text_level_mos[have] - pred[have])))
            out["text_level_srcc"] = srcc(text_level_mos[have], mos[have])
        else:
            out["text_vs_weighted_mae"] = out["text_level_srcc"] = None
    return out
