#!/usr/bin/env python
"""DVC stage `evaluate`: SRCC/PLCC/KRCC with bootstrap CIs, pairwise accuracy on hard pairs, bias.

Works on any predictions CSV with columns image_id,model,split,pred,mos (text_level optional):
    python scripts/evaluate.py --predictions P.csv --out M.json
"""

import argparse
from pathlib import Path

from aesthetic_llm.errors import cli_entry
from aesthetic_llm.evaluate import evaluate_with_params
from aesthetic_llm.io_utils import write_json
from aesthetic_llm.params import Params


@cli_entry
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--predictions", type=Path, help="default: score.out from params")
    ap.add_argument(
        "--also", type=Path, action="append", default=[], help="more predictions CSVs (may be empty; repeatable)"
    )
    ap.add_argument("--pairs", type=Path, help="hard pairs CSV (default: <data.out_dir>/hard_pairs.csv)")
    ap.add_argument("--out", type=Path, default=Path("reports/metrics.json"))
    args = ap.parse_args()
    p = Params.load(args.params)
    metrics = evaluate_with_params(
        p,
        args.predictions or Path(p.str("score.out")),
        args.pairs or Path(p.str("data.out_dir")) / "hard_pairs.csv",
        also=args.also,
    )
    metrics["profile"] = p.profile
    write_json(args.out, metrics)
    for model, splits in metrics["models"].items():
        print(model, {s: m["srcc"] for s, m in splits.items()})


if __name__ == "__main__":
    main()
