#!/usr/bin/env python
"""Score your own photos (files or folders) with a model the pipeline produced.

    python scripts/score_images.py --model models/dpo photo.jpg shots/ [--critique] [--csv scores.csv]

Prints one tab-separated line per image (path, score on 1–10, written level[, critique]); unreadable
files are reported on stderr and skipped.
"""

import argparse
import sys
from pathlib import Path

from aesthetic_llm.errors import UserError, cli_entry
from aesthetic_llm.io_utils import write_csv
from aesthetic_llm.levels import SCORE_MODES
from aesthetic_llm.scorer import expand_paths, scorer_from_args


@cli_entry
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="+", help="image files and/or folders")
    ap.add_argument("--model", required=True, help="checkpoint dir, LoRA adapter dir or hub id")
    ap.add_argument("--mode", choices=SCORE_MODES, default="cot")
    ap.add_argument("--samples", type=int, default=8, help="cot_sampled: critiques sampled per image")
    ap.add_argument("--critique", action="store_true", help="also output the analysis the model writes (cot)")
    ap.add_argument("--csv", type=Path, help="write path,score,level[,critique] to this CSV")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--num-levels", type=int, default=10)
    args = ap.parse_args()
    paths = expand_paths(args.inputs)
    if not paths:
        raise UserError(f"no image files found in {' '.join(args.inputs)}")
    scorer = scorer_from_args(args)
    results = scorer.score(paths, critique=args.critique, progress=len(paths) > args.batch_size)
    for path, why in scorer.skipped:
        print(f"skipped: {path}: {why}", file=sys.stderr)
    for r in results:
        cols = [r.path, f"{r.score:.3f}", "" if r.level is None else str(r.level)]
        print("\t".join(cols + ([r.critique or ""] if args.critique else [])))
    if args.csv:
        fields = ["path", "score", "level"] + (["critique"] if args.critique else [])
        write_csv(args.csv, [vars(r) for r in results], fields)
    if not results:
        raise UserError(f"none of the {len(paths)} input file(s) could be read")


if __name__ == "__main__":
    main()
