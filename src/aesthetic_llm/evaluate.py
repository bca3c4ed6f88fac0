"""The evaluate stage: metrics per model × split from any predictions CSV (`image_id,model,split,pred,mos`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UserError
from .io_utils import read_csv
from .metrics import pairwise_accuracy, pairwise_accuracy_ci, srcc, summarise
from .params import Params

REQUIRED = ("image_id", "model", "split", "pred", "mos")
# The stage each model continues from: its hard-pair accuracy is also reported as a paired difference to it
# (the study's claim is DPO over SFT on hard pairs, SFT over zero-shot).
STAGE_BEFORE = {"sft": "zero_shot", "dpo": "sft"}


def _float(value: str, path: Path, lineno: int, column: str) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{path}:{lineno}: column {column}: not a number ({value!r})") from None
    if not math.isfinite(x):
        raise UserError(f"{path}:{lineno}: column {column}: not finite ({value!r})")
    return x


def load_predictions(
    path: Path, groups: dict[tuple[str, str], dict[str, Any]] | None = None, allow_empty: bool = False
) -> dict[tuple[str, str], dict[str, Any]]:
    """(model, split) -> arrays; numbers validated with their row number. Adds to `groups` when given
    (several prediction files, e.g. ours and the published checkpoints'); a model/split in two files is
    an error."""
    new: dict[tuple[str, str], dict[str, Any]] = {}
    for lineno, row in enumerate(read_csv(path, required=REQUIRED), 2):
        key = (row["model"], row["split"])
        if groups and key in groups:
            raise UserError(f"{path}:{lineno}: model {key[0]!r} split {key[1]!r} already in another predictions file")
        g = new.setdefault(key, {"ids": [], "pred": [], "mos": [], "text": []})
        g["ids"].append(row["image_id"])
        g["pred"].append(_float(row["pred"], path, lineno, "pred"))
        g["mos"].append(_float(row["mos"], path, lineno, "mos"))
        tl = row.get("text_level", "")
        g["text"].append(_float(tl, path, lineno, "text_level") if tl not in ("", None) else float("nan"))
    if not new and not allow_empty:
        raise UserError(f"{path}: no prediction rows")
    for g in new.values():
        for k in ("pred", "mos", "text"):
            g[k] = np.asarray(g[k], dtype=float)
    return {**(groups or {}), **new}


def load_pairs(path: Path | None) -> list[tuple[str, str, float]]:
    if path is None or not Path(path).exists():
        return []
    rows = read_csv(path, required=("image_a", "image_b", "delta"))
    return [(r["image_a"], r["image_b"], float(r["delta"])) for r in rows]


def _paired_srcc_diffs(a: dict[str, Any], b: dict[str, Any], n_boot: int, seed: int) -> tuple[float, np.ndarray] | None:
    """SRCC(a) - SRCC(b) on the images both scored, and its paired bootstrap replicates."""
    common = sorted(set(a["ids"]) & set(b["ids"]))
    if len(common) < 3 or n_boot <= 0:
        return None
    ia = {k: i for i, k in enumerate(a["ids"])}
    ib = {k: i for i, k in enumerate(b["ids"])}
    pa = a["pred"][[ia[k] for k in common]]
    pb = b["pred"][[ib[k] for k in common]]
    mos = a["mos"][[ia[k] for k in common]]
    sa, sb = srcc(pa, mos), srcc(pb, mos)
    rng = np.random.default_rng(seed)
    diffs = []
    for idx in rng.integers(0, len(common), size=(n_boot, len(common))):
        ra, rb = srcc(pa[idx], mos[idx]), srcc(pb[idx], mos[idx])
        if ra is not None and rb is not None:
            diffs.append(ra - rb)
    if not diffs or sa is None or sb is None:
        return None
    return sa - sb, np.asarray(diffs)


def paired_srcc_diff(a: dict[str, Any], b: dict[str, Any], n_boot: int, ci: float, seed: int) -> dict[str, Any]:
    """SRCC(a) - SRCC(b) with its paired-bootstrap CI and two-sided p ({} when undefined)."""
    res = _paired_srcc_diffs(a, b, n_boot, seed)
    if res is None:
        return {}
    diff, d = res
    alpha = (1 - ci) / 2
    return {
        "diff": round(float(diff), 4),
        "ci": [round(float(np.quantile(d, alpha)), 4), round(float(np.quantile(d, 1 - alpha)), 4)],
        "p": round(float(min(1.0, 2 * min((d <= 0).mean(), (d >= 0).mean()))), 4),
    }


def _pair_metrics(
    groups: dict[tuple[str, str], dict[str, Any]],
    model: str,
    g: dict[str, Any],
    pairs: list[tuple[str, str, float]],
    n_boot: int,
    ci: float,
    seed: int,
) -> dict[str, Any]:
    """Hard-pair accuracy with an image-bootstrap CI, and its paired difference to the stage before."""

    def by_id(grp: dict[str, Any], key: str) -> dict[str, float]:
        return dict(zip(grp["ids"], grp[key], strict=True))

    # Hard pairs are drawn from the whole test split (close MOS, not only the hard band).
    src = groups.get((model, "test"), g)
    pred, mos = by_id(src, "pred"), by_id(src, "mos")
    acc, n_pairs = pairwise_accuracy(pred, pairs, mos)
    out: dict[str, Any] = {
        "pair_acc": acc,
        "n_pairs": n_pairs,
        "pair_acc_ci": pairwise_accuracy_ci(pred, pairs, mos, n_boot=n_boot, ci=ci, seed=seed + 2),
    }
    before = STAGE_BEFORE.get(model)
    if before and (before, "test") in groups and acc is not None:
        other = by_id(groups[(before, "test")], "pred")
        other_acc, _ = pairwise_accuracy(other, pairs, mos)
        if other_acc is not None:
            out[f"pair_acc_diff_vs_{before}"] = round(acc - other_acc, 4)
            out[f"pair_acc_diff_vs_{before}_ci"] = pairwise_accuracy_ci(
                pred, pairs, mos, n_boot=n_boot, ci=ci, seed=seed + 3, other_by_id=other
            )
    return out


def evaluate(
    predictions: Path,
    pairs_path: Path | None,
    *,
    also: Sequence[Path] = (),
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    threshold: float = 5.0,
    baseline: str = "zero_shot",
    num_levels: int = 10,
) -> dict[str, Any]:
    from .levels import level_to_mos

    groups = load_predictions(predictions)
    for extra in also:  # e.g. the published checkpoints' rows (empty on the demo profile)
        groups = load_predictions(extra, groups, allow_empty=True)
    pairs = load_pairs(pairs_path)
    models: dict[str, dict[str, Any]] = {}
    for (model, split), g in sorted(groups.items()):
        text_mos = np.array([level_to_mos(t, num_levels) if not np.isnan(t) else np.nan for t in g["text"]])
        m = summarise(
            g["pred"], g["mos"], n_boot=n_boot, ci=ci, seed=seed, threshold=threshold, text_level_mos=text_mos
        )
        if split == "hard" and pairs:
            m.update(_pair_metrics(groups, model, g, pairs, n_boot, ci, seed))
        # p vs the baseline for every model; for a stage, also what it changed vs the stage before (one
        # bootstrap each, on the images both scored)
        before = STAGE_BEFORE.get(model)
        for other in dict.fromkeys(x for x in (baseline, before) if x and x != model and (x, split) in groups):
            d = paired_srcc_diff(g, groups[(other, split)], n_boot, ci, seed)
            m[f"p_vs_{other}"] = d.get("p")
            if other == before and d:
                m[f"srcc_diff_vs_{other}"], m[f"srcc_diff_vs_{other}_ci"] = d["diff"], d["ci"]
        models.setdefault(model, {})[split] = m
    return {
        "models": models,
        "settings": {
            "bootstrap": n_boot,
            "ci": ci,
            "seed": seed,
            "binary_threshold": threshold,
            "baseline": baseline,
            "predictions": str(predictions),
            "also": [str(x) for x in also],
        },
    }


def evaluate_with_params(
    params: Params, predictions: Path, pairs_path: Path | None, also: Sequence[Path] = ()
) -> dict[str, Any]:
    """`evaluate` with the bootstrap, CI level, seed, threshold and levels of a params file."""
    return evaluate(
        predictions,
        pairs_path,
        also=also,
        n_boot=params.int("evaluate.bootstrap", lo=0),
        ci=params.num("evaluate.ci", lo=0.5, hi=0.999),
        seed=params.int("seed"),
        threshold=params.num("evaluate.binary_threshold"),
        num_levels=params.int("levels.num_levels", lo=2),
    )
