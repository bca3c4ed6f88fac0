#!/usr/bin/env python
"""Rescore the pipeline's trained models under other scoring params, without retraining.

    python scripts/rescore.py --set score.mode=cot_sampled --set score.samples=16 --out-dir reports/cot_sampled

Writes into --out-dir the params file that produced the numbers (params.yaml: params.yaml with the --set
values), predictions/ (the score stages' files: base.csv, seed<N>.csv) and metrics.json (the evaluate
stage's), so a scoring variant is compared on exactly the models, seeds and images of the committed run.
"""

import argparse
from pathlib import Path

from aesthetic_llm.errors import cli_entry
from aesthetic_llm.experiments.side_runs import params_with_sets, score_and_evaluate
from aesthetic_llm.params import pin_numerics


@cli_entry
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a scoring param (repeatable)")
    ap.add_argument("--out-dir", type=Path, required=True)
    args = ap.parse_args()
    p = params_with_sets(args.params, args.set + [f"score.out_dir={args.out_dir / 'predictions'}"], args.out_dir)
    pin_numerics(p)
    metrics = score_and_evaluate(p, args.out_dir)
    for model, splits in metrics["models"].items():
        print(model, {s: None if m["srcc"] is None else round(m["srcc"], 4) for s, m in splits.items()})


if __name__ == "__main__":
    main()
