"""The evaluate stage: metrics per model × split over training seeds, from predictions CSVs.

Input rows: `image_id,model,split,pred,mos` (optional `text_level`, and `seed` for trained models; a
model without seeds, such as the zero-shot base, is the same model for every seed). Each metric is the
mean over seeds, with `<metric>_seeds` (one value per seed, in `settings.seeds` order) and
`<metric>_spread` ([min, max]); SRCC, PLCC and hard-pair accuracy get intervals from the seed × photo ×
crop bootstrap (seed_bootstrap.py), and the paired comparisons the same on one shared draw.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aesthetic_llm.data.manifest import source_group
from aesthetic_llm.errors import UserError
from aesthetic_llm.evaluation.metrics import pair_hits, summarise
from aesthetic_llm.evaluation.seed_bootstrap import (
    interval,
    mean_over_drawn,
    pair_weights,
    plcc_rows,
    resample_indices,
    seed_draws,
    srcc_rows,
    two_sided_p,
    weighted_accuracy,
)
from aesthetic_llm.io_utils import read_csv
from aesthetic_llm.levels import level_to_mos
from aesthetic_llm.params import Params, training_seeds

REQUIRED = ("image_id", "model", "split", "pred", "mos")
# What each model is compared with (paired: same seeds, same images): the stage it continues from, and
# for the CoT model also the same recipe without critiques.
COMPARISONS = {"sft": ("zero_shot", "qalign_style"), "dpo": ("sft",)}
INTERVAL_STATS = {"srcc": srcc_rows, "plcc": plcc_rows}
UNSEEDED = ""  # the seed field of a model that was not trained (one model for every seed)


def _float(value: str, path: Path, lineno: int, column: str) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{path}:{lineno}: column {column}: not a number ({value!r})") from None
    if not math.isfinite(x):
        raise UserError(f"{path}:{lineno}: column {column}: not finite ({value!r})")
    return x


class Group:
    """One model on one split: per seed the predictions, aligned on the same image order."""

    def __init__(self, model: str, split: str) -> None:
        self.model, self.split = model, split
        self.rows: dict[str, dict[str, tuple[float, float, float]]] = {}  # seed -> image_id -> (pred, mos, text)

    def add(self, seed: str, image_id: str, values: tuple[float, float, float], where: str) -> None:
        per = self.rows.setdefault(seed, {})
        if image_id in per:
            raise UserError(f"{where}: image {image_id!r} scored twice for model {self.model!r} split {self.split!r}")
        per[image_id] = values

    def finish(self, where: str) -> None:
        seeds = list(self.rows)
        if UNSEEDED in self.rows and len(seeds) > 1:
            raise UserError(f"{where}: model {self.model!r} has rows with and without a seed")
        self.ids = sorted(self.rows[seeds[0]])
        for s in seeds[1:]:
            if sorted(self.rows[s]) != self.ids:
                raise UserError(
                    f"{where}: model {self.model!r} split {self.split!r}: seed {s} scored other images than seed "
                    f"{seeds[0]}"
                )
        self.seeds = seeds
        cols = {s: np.array([self.rows[s][i] for i in self.ids], dtype=float) for s in seeds}
        self.pred = {s: c[:, 0] for s, c in cols.items()}
        self.text = {s: c[:, 2] for s, c in cols.items()}
        self.mos = cols[seeds[0]][:, 1]

    @property
    def trained(self) -> bool:
        return self.seeds != [UNSEEDED]


def load_predictions(paths: Sequence[Path], allow_empty: Sequence[Path] = ()) -> dict[tuple[str, str], Group]:
    """(model, split) -> Group from every file; numbers validated with file and row. Files in
    `allow_empty` may hold no rows (e.g. the published checkpoints' on the demo profile)."""
    groups: dict[tuple[str, str], Group] = {}
    owner: dict[tuple[str, str, str], Path] = {}  # (model, split, seed) -> the file that holds it
    for path in paths:
        rows = read_csv(path, required=REQUIRED)
        if not rows and path not in allow_empty:
            raise UserError(f"{path}: no prediction rows")
        for lineno, row in enumerate(rows, 2):
            where = f"{path}:{lineno}"
            seed = (row.get("seed") or UNSEEDED).strip()
            key = (row["model"], row["split"])
            first = owner.setdefault((*key, seed), path)
            if first != path:
                raise UserError(f"{where}: model {key[0]!r} split {key[1]!r} seed {seed!r} already in {first}")
            tl = row.get("text_level", "")
            values = (
                _float(row["pred"], path, lineno, "pred"),
                _float(row["mos"], path, lineno, "mos"),
                _float(tl, path, lineno, "text_level") if tl not in ("", None) else float("nan"),
            )
            groups.setdefault(key, Group(*key)).add(seed, row["image_id"], values, where)
    for key, g in groups.items():
        g.finish(", ".join(sorted({str(owner[(*key, s)]) for s in g.rows})))
    return groups


def load_pairs(path: Path | None) -> list[tuple[str, str, float]]:
    if path is None or not Path(path).exists():
        return []
    rows = read_csv(path, required=("image_a", "image_b", "delta"))
    return [(r["image_a"], r["image_b"], float(r["delta"])) for r in rows]


def order_seeds(groups: dict[tuple[str, str], Group], seeds: Sequence[int] | None) -> list[str]:
    """The trained seeds in `seeds` order (default: numeric order); every trained model must have them all."""
    found = {s for g in groups.values() if g.trained for s in g.seeds}
    order = [str(s) for s in seeds] if seeds is not None else sorted(found, key=lambda s: (len(s), s))
    for g in groups.values():
        if g.trained and set(g.seeds) != set(order):
            raise UserError(
                f"model {g.model!r} split {g.split!r}: predictions for seeds {sorted(g.seeds)}, expected {order} "
                "(settings: seeds)"
            )
    return order


def aggregate(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean over seeds of every point metric, with `<key>_seeds` and `<key>_spread` ([min, max])."""
    out: dict[str, Any] = {"n": per_seed[0]["n"]}
    for key in per_seed[0]:
        if key == "n":
            continue
        vals = [m[key] for m in per_seed]
        ok = all(v is not None for v in vals)
        out[key] = float(np.mean(vals)) if ok else None
        out[f"{key}_seeds"] = vals
        out[f"{key}_spread"] = [float(min(vals)), float(max(vals))] if ok else None
    return out


class SplitDraw:
    """One bootstrap draw shared by every model on a split (images) and by every model (seeds)."""

    def __init__(self, ids: list[str], n_seeds: int, n_boot: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.idx = resample_indices([source_group(i) for i in ids], n_boot, rng)
        self.seeds = seed_draws(max(1, n_seeds), n_boot, rng)
        self.n_clusters = len({source_group(i) for i in ids})

    def seeds_for(self, trained: bool) -> np.ndarray:
        """The seed draws of a trained model; an unseeded one has its single column."""
        return self.seeds if trained else np.zeros((len(self.seeds), 1), dtype=int)


def _per_seed_matrix(g: Group, draw: SplitDraw, stat: Any, order: list[str]) -> np.ndarray:
    seeds = order if g.trained else [UNSEEDED]
    return np.stack([stat(g.pred[s][draw.idx], g.mos[draw.idx]) for s in seeds], axis=1)  # [B, S]


def _mean_over_drawn(per_seed: np.ndarray, draw: SplitDraw, trained: bool) -> np.ndarray:
    return mean_over_drawn(per_seed, draw.seeds_for(trained))


def _paired(a: np.ndarray, b: np.ndarray, draw: SplitDraw, a_trained: bool, b_trained: bool) -> np.ndarray:
    """Replicates of mean_over_seeds(a) - mean_over_seeds(b), pairing a model with b of the same seed."""
    if a_trained and b_trained:
        return _mean_over_drawn(a - b, draw, True)
    return _mean_over_drawn(a, draw, a_trained) - _mean_over_drawn(b, draw, b_trained)


def _hard_pairs(
    test: Group, pairs: list[tuple[str, str, float]], draw: SplitDraw, order: list[str]
) -> tuple[list[dict[str, Any]], np.ndarray | None]:
    """Per seed the hard-pair accuracy and pair count; and the [B, S] bootstrap accuracies."""
    seeds = order if test.trained else [UNSEEDED]
    mos = dict(zip(test.ids, test.mos, strict=True))
    per_seed, reps = [], []
    for s in seeds:
        pred = dict(zip(test.ids, test.pred[s], strict=True))
        ids, ia, ib, hits = pair_hits(pred, pairs, mos)
        per_seed.append({"pair_acc": float(hits.mean()) if len(hits) else None, "n_pairs": len(hits)})  # ties: 0.5
        if len(hits):
            pos = {i: k for k, i in enumerate(test.ids)}
            ga, gb = np.array([pos[ids[k]] for k in ia]), np.array([pos[ids[k]] for k in ib])
            reps.append(weighted_accuracy(hits, pair_weights(draw.idx, len(test.ids), ga, gb)))
    return per_seed, (np.stack(reps, axis=1) if len(reps) == len(seeds) else None)


def evaluate(
    predictions: Sequence[Path],
    pairs_path: Path | None,
    *,
    also: Sequence[Path] = (),
    seeds: Sequence[int] | None = None,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    threshold: float = 5.0,
    baseline: str = "zero_shot",
    num_levels: int = 10,
) -> dict[str, Any]:
    groups = load_predictions([*predictions, *also], allow_empty=also)
    order = order_seeds(groups, seeds)
    pairs = load_pairs(pairs_path)
    splits = sorted({split for _, split in groups})
    draws = {
        split: SplitDraw(next(g.ids for (_, s), g in groups.items() if s == split), len(order), n_boot, seed + k)
        for k, split in enumerate(splits)
    }
    models: dict[str, dict[str, Any]] = {}
    reps: dict[tuple[str, str, str], np.ndarray] = {}  # (model, split, stat) -> [B, S] per-seed replicates
    for (model, split), g in sorted(groups.items()):
        draw = draws[split]
        if g.ids != next(x.ids for (_, s), x in groups.items() if s == split):
            draw = SplitDraw(g.ids, len(order), n_boot, seed + splits.index(split))  # other images: own draw
        seeds_g = order if g.trained else [UNSEEDED]
        per_seed = []
        for s in seeds_g:
            text = np.array([level_to_mos(t, num_levels) if not np.isnan(t) else np.nan for t in g.text[s]])
            per_seed.append(summarise(g.pred[s], g.mos, threshold=threshold, text_level_mos=text))
        # a model not trained here is the same model for every seed: its value repeats per seed
        m = aggregate(per_seed if g.trained else per_seed * max(1, len(order)))
        m["trained"], m["n_sources"] = g.trained, draw.n_clusters
        for name, stat in INTERVAL_STATS.items():
            r = reps[(model, split, name)] = _per_seed_matrix(g, draw, stat, order)
            m[f"{name}_ci"] = interval(_mean_over_drawn(r, draw, g.trained), ci) if n_boot else None
        if split == "hard" and pairs and (model, "test") in groups:
            # Hard pairs are drawn from the whole test split (close MOS, not only the hard band).
            test = groups[(model, "test")]
            pair_seed, r = _hard_pairs(test, pairs, draws["test"], order)
            pair_seed = pair_seed if test.trained else pair_seed * max(1, len(order))
            acc = aggregate([{"n": p["n_pairs"], "pair_acc": p["pair_acc"]} for p in pair_seed])
            m["n_pairs"] = acc.pop("n")
            m.update(acc)
            if r is not None:
                reps[(model, split, "pair_acc")] = r
                m["pair_acc_ci"] = interval(_mean_over_drawn(r, draws["test"], test.trained), ci)
        models.setdefault(model, {})[split] = m
    _comparisons(models, groups, reps, draws, baseline, ci)
    return {
        "models": models,
        "settings": {
            "seeds": [int(s) for s in order],
            "bootstrap": n_boot,
            "ci": ci,
            "ci_method": "percentile bootstrap over training seeds x source photos x crops within a photo",
            "bootstrap_seed": seed,
            "binary_threshold": threshold,
            "baseline": baseline,
            "comparisons": {k: list(v) for k, v in COMPARISONS.items()},
            "predictions": [str(x) for x in predictions],
            "also": [str(x) for x in also],
        },
    }


def _comparisons(
    models: dict[str, dict[str, Any]],
    groups: dict[tuple[str, str], Group],
    reps: dict[tuple[str, str, str], np.ndarray],
    draws: dict[str, SplitDraw],
    baseline: str,
    ci: float,
) -> None:
    """`p_vs_<other>` (SRCC) against the baseline and each comparison; for the comparisons also
    `<stat>_diff_vs_<other>` (mean over seeds of the paired difference), its per-seed values and its CI
    (pair accuracy: with its p as well)."""
    for (model, split), g in groups.items():
        for other in dict.fromkeys((baseline, *COMPARISONS.get(model, ()))):
            if other == model or (other, split) not in groups or groups[(other, split)].ids != g.ids:
                continue
            o, m, mo = groups[(other, split)], models[model][split], models[other][split]
            for stat in ("srcc", "pair_acc") if split == "hard" else ("srcc",):
                a, b = reps.get((model, split, stat)), reps.get((other, split, stat))
                if a is None or b is None or m.get(stat) is None or mo.get(stat) is None:
                    continue
                diffs = _paired(a, b, draws["test" if stat == "pair_acc" else split], g.trained, o.trained)
                if stat == "srcc":
                    m[f"p_vs_{other}"] = two_sided_p(diffs)
                if other not in COMPARISONS.get(model, ()):
                    continue
                key = f"{stat}_diff_vs_{other}"
                per = [x - y for x, y in zip(m[f"{stat}_seeds"], mo[f"{stat}_seeds"], strict=True)]
                m[key], m[f"{key}_seeds"], m[f"{key}_ci"] = float(np.mean(per)), per, interval(diffs, ci)
                if stat == "pair_acc":
                    m[f"{key}_p"] = two_sided_p(diffs)


def evaluate_with_params(
    params: Params,
    predictions: Sequence[Path],
    pairs_path: Path | None,
    also: Sequence[Path] = (),
    seeds: Sequence[int] | None = None,
) -> dict[str, Any]:
    """`evaluate` with the bootstrap, CI level, bootstrap seed, threshold and levels of a params file, and its
    training `seeds` unless others are given."""
    return evaluate(
        predictions,
        pairs_path,
        also=also,
        seeds=training_seeds(params) if seeds is None else seeds,
        n_boot=params.int("evaluate.bootstrap", lo=0),
        ci=params.num("evaluate.ci", lo=0.5, hi=0.999),
        seed=params.int("seed"),
        threshold=params.num("evaluate.binary_threshold"),
        num_levels=params.int("levels.num_levels", lo=2),
    )
