"""What checkpoint selection on val adds over keeping the last checkpoint, measured across training seeds.

For each seed the stage's recipe is trained once with every epoch's checkpoint kept; each checkpoint is
scored on val and test. Selection picks the best val SRCC (ties: the earlier step) on the first k crops
of each val photo, for several k (the val size), and the test SRCC at the picked step is compared with
the last step's, paired by seed and image: mean over seeds with the seed × photo × crop bootstrap CI.
Runs beside the pipeline (never a stage dependency); `scripts/selection_study.py` is its entry point.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aesthetic_llm.data.manifest import manifest_path, source_group
from aesthetic_llm.evaluation.metrics import srcc
from aesthetic_llm.evaluation.seed_bootstrap import (
    interval,
    mean_over_drawn,
    resample_indices,
    seed_draws,
    srcc_rows,
    two_sided_p,
)
from aesthetic_llm.params import Params
from aesthetic_llm.paths import seed_dir
from aesthetic_llm.train.selection import candidates, score_manifest

Curve = dict[int, dict[str, tuple[list[str], np.ndarray, np.ndarray]]]  # step -> split -> (ids, pred, mos)


def train_with_checkpoints(p: Params, stage: str, name: str, seed: int, work_dir: Path) -> tuple[Path, int]:
    """The stage's recipe for one seed, no selection, every epoch's checkpoint kept: (train dir, final step)."""
    from aesthetic_llm.train.datasets import PLAIN_DATASET, PLAIN_VAL_DATASET
    from aesthetic_llm.train.settings import TrainSettings
    from aesthetic_llm.train.stage import train_stage

    plain = {"dataset": PLAIN_DATASET, "eval_dataset": PLAIN_VAL_DATASET} if name == "qalign_style" else None
    out = seed_dir(work_dir / name, seed)
    if (out / "trainer_state.json").exists():  # resumable: a finished run is reused
        from aesthetic_llm.io_utils import read_json

        return out, int(read_json(out / "trainer_state.json")["global_step"])
    summary = train_stage(
        TrainSettings.from_params(p, stage),  # no selection: every checkpoint is kept and scored here
        p.str("model.name_or_path"),
        seed=seed,
        out_dir=out,
        reports_dir=out / "reports",
        name=name,
        dataset=plain,
        keep_checkpoints=True,
    )
    return out, int(summary["steps"])


def score_checkpoints(p: Params, train_dir: Path, final_step: int, mode: str) -> Curve:
    """Every checkpoint of one run scored on val and test."""
    data = p.str("data.out_dir")
    kw = {
        "num_levels": p.int("levels.num_levels", lo=2),
        "mode": mode,
        "max_new_tokens": p.int("score.max_new_tokens", lo=1),
        "batch_size": p.int("score.batch_size", lo=1),
    }
    return {
        step: {split: score_manifest(path, train_dir, manifest_path(data, split), **kw) for split in ("val", "test")}
        for step, path in candidates(train_dir, final_step)
    }


def first_crops(ids: list[str], k: int) -> np.ndarray:
    """Indices of the first k crops of each source photo (a smaller val set drawn from the same photos)."""
    seen: dict[str, int] = {}
    keep = []
    for i, image_id in enumerate(ids):
        group = source_group(image_id)
        seen[group] = seen.get(group, 0) + 1
        if seen[group] <= k:
            keep.append(i)
    return np.asarray(keep)


def pick(curve: Curve, k: int | None) -> int:
    """The step with the best val SRCC on the first k crops per val photo (None: all of val)."""
    best: tuple[float, int] | None = None
    for step in sorted(curve):
        ids, pred, mos = curve[step]["val"]
        idx = np.arange(len(ids)) if k is None else first_crops(ids, k)
        value = srcc(pred[idx], mos[idx])
        if value is not None and (best is None or value > best[0]):
            best = (value, step)
    return best[1] if best else max(curve)


def summarise(curves: dict[int, Curve], val_sizes: Sequence[int | None], n_boot: int, ci: float, seed: int) -> dict:
    """Per val size: each seed's picked step, test SRCC picked vs last, and the mean paired difference [CI]."""
    seeds = sorted(curves)
    ids = curves[seeds[0]][max(curves[seeds[0]])]["test"][0]
    rng = np.random.default_rng(seed)
    idx, draws = resample_indices([source_group(i) for i in ids], n_boot, rng), seed_draws(len(seeds), n_boot, rng)
    out: dict[str, Any] = {"seeds": seeds, "test_images": len(ids), "by_val_size": []}
    for k in val_sizes:
        rows, reps = [], []
        for s in seeds:
            curve = curves[s]
            chosen, last = pick(curve, k), max(curve)
            _, pc, mos = curve[chosen]["test"]
            _, pl, _ = curve[last]["test"]
            rows.append(
                {
                    "seed": s,
                    "chosen_step": chosen,
                    "last_step": last,
                    "test_srcc_chosen": srcc(pc, mos),
                    "test_srcc_last": srcc(pl, mos),
                }
            )
            reps.append(srcc_rows(pc[idx], mos[idx]) - srcc_rows(pl[idx], mos[idx]))
        diffs = mean_over_drawn(np.stack(reps, axis=1), draws)
        per = [r["test_srcc_chosen"] - r["test_srcc_last"] for r in rows]
        out["by_val_size"].append(
            {
                "val_crops_per_photo": k,
                "seeds": rows,
                "test_srcc_diff_chosen_minus_last": float(np.mean(per)),
                "ci": interval(diffs, ci),
                "p": two_sided_p(diffs),
                "chose_last": sum(r["chosen_step"] == r["last_step"] for r in rows),
            }
        )
    return out
