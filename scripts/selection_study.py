#!/usr/bin/env python
"""Measure what checkpoint selection on val adds over the last checkpoint, across training seeds.

    python scripts/selection_study.py --stage sft --seeds 42 43 44 --out-dir reports/selection_study

Needs the pipeline's data (`dvc repro sft_data`). Trains the stage's recipe once per seed under --work-dir
(default runs/selection_study; finished runs are reused), scores every checkpoint on val and test, and
writes curves.csv (val and test SRCC per seed and step) and summary.json (per val size: the picked step per
seed and test SRCC picked − last, mean over seeds with its seed × photo bootstrap CI) into --out-dir.
"""

import argparse
import json
from pathlib import Path

from aesthetic_llm.errors import cli_entry
from aesthetic_llm.evaluation.metrics import srcc
from aesthetic_llm.experiments.selection_study import score_checkpoints, summarise, train_with_checkpoints
from aesthetic_llm.io_utils import write_csv, write_json
from aesthetic_llm.params import Params, pin_numerics, training_seeds

STAGES = {"sft": ("sft", "cot"), "qalign_style": ("sft", "direct")}


@cli_entry
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--stage", choices=sorted(STAGES), default="sft")
    ap.add_argument("--seeds", type=int, nargs="+", help="training seeds (default: `seeds`)")
    ap.add_argument("--val-sizes", type=int, nargs="+", default=[12, 24], help="val crops per photo (and all)")
    ap.add_argument("--out-dir", type=Path, default=Path("reports/selection_study"))
    ap.add_argument("--work-dir", type=Path, default=Path("runs/selection_study"))
    args = ap.parse_args()
    p = Params.load(args.params)
    pin_numerics(p)
    stage, mode = STAGES[args.stage]
    curves = {}
    for seed in args.seeds or training_seeds(p):
        train_dir, final = train_with_checkpoints(p, stage, args.stage, seed, args.work_dir)
        curves[seed] = score_checkpoints(p, train_dir, final, mode)
    rows = [
        {"stage": args.stage, "seed": s, "step": step, **{f"{k}_srcc": srcc(*v[1:]) for k, v in splits.items()}}
        for s, curve in curves.items()
        for step, splits in sorted(curve.items())
    ]
    out = args.out_dir / args.stage
    write_csv(out / "curves.csv", rows, ["stage", "seed", "step", "val_srcc", "test_srcc"])
    summary = summarise(curves, [*args.val_sizes, None], p.int("evaluate.bootstrap", lo=1), 0.95, p.int("seed"))
    summary["stage"] = args.stage
    write_json(out / "summary.json", summary)
    for entry in summary["by_val_size"]:
        print(json.dumps({k: entry[k] for k in entry if k != "seeds"}))


if __name__ == "__main__":
    main()
