#!/usr/bin/env python
"""Rescore the pipeline's trained models under other scoring params, without retraining.

    python scripts/rescore.py --set score.mode=cot_sampled --set score.samples=16 --out-dir reports/cot_sampled

Writes into --out-dir the params file that produced the numbers (params.yaml: params.yaml with the --set
values), predictions.csv (the score stage's format) and metrics.json (the evaluate stage's), so a
scoring variant is compared on exactly the models and images of the committed run.
"""

import argparse
from pathlib import Path

import yaml

from aesthetic_llm.errors import cli_entry
from aesthetic_llm.evaluate import evaluate_with_params
from aesthetic_llm.io_utils import atomic_write_text, write_json
from aesthetic_llm.param_sets import with_overrides
from aesthetic_llm.params import Params
from aesthetic_llm.predict import score_all


@cli_entry
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a scoring param (repeatable)")
    ap.add_argument("--out-dir", type=Path, required=True)
    args = ap.parse_args()
    Params.load(args.params)  # a broken file is a one-line error before anything is written
    raw = yaml.safe_load(Path(args.params).read_text(encoding="utf-8"))
    data = with_overrides(raw, args.set + [f"score.out={args.out_dir / 'predictions.csv'}"])
    args.out_dir.mkdir(parents=True, exist_ok=True)
    used = args.out_dir / "params.yaml"
    atomic_write_text(used, yaml.safe_dump(data, sort_keys=False))
    p = Params.load(used)
    summary = score_all(p, Path(p.str("score.out")))
    metrics = evaluate_with_params(p, Path(p.str("score.out")), Path(p.str("data.out_dir")) / "hard_pairs.csv")
    metrics["profile"], metrics["scoring_seconds"] = p.profile, summary["seconds"]
    write_json(args.out_dir / "metrics.json", metrics)
    for model, splits in metrics["models"].items():
        print(model, {s: m["srcc"] for s, m in splits.items()})


if __name__ == "__main__":
    main()
