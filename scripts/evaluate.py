#!/usr/bin/env python
"""DVC stage `evaluate`: per model × split the seed mean, spread and seed × photo × crop bootstrap CIs of
SRCC/PLCC and hard-pair accuracy, the paired comparisons, and every other metric per seed.

Works on any predictions CSVs with columns image_id,model,split,pred,mos (text_level, seed optional):
    python scripts/evaluate.py --predictions P.csv [--predictions Q.csv] --out M.json
"""

import argparse
from pathlib import Path

from aesthetic_llm.errors import cli_entry
from aesthetic_llm.evaluation.evaluate import evaluate_with_params
from aesthetic_llm.io_utils import write_json
from aesthetic_llm.params import Params, training_seeds
from aesthetic_llm.paths import predictions_file


@cli_entry
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument(
        "--predictions", type=Path, action="append", help="default: the score stages' files for `seeds` (repeatable)"
    )
    ap.add_argument(
        "--also", type=Path, action="append", default=[], help="more predictions CSVs (may be empty; repeatable)"
    )
    ap.add_argument("--pairs", type=Path, help="hard pairs CSV (default: <data.out_dir>/hard_pairs.csv)")
    ap.add_argument("--out", type=Path, default=Path("reports/metrics.json"))
    args = ap.parse_args()
    p = Params.load(args.params)
    out_dir = p.str("score.out_dir")
    predictions = args.predictions or [predictions_file(out_dir, s) for s in (None, *training_seeds(p))]
    metrics = evaluate_with_params(
        p, predictions, args.pairs or Path(p.str("data.out_dir")) / "hard_pairs.csv", also=args.also
    )
    metrics["profile"] = p.profile
    write_json(args.out, metrics)
    for model, splits in metrics["models"].items():
        print(model, {s: round(m["srcc"], 4) if m["srcc"] is not None else None for s, m in splits.items()})


if __name__ == "__main__":
    main()
