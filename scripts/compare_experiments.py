#!/usr/bin/env python
"""Rank DVC experiments (e.g. `make compare`: dpo.pair_strategy x dpo.loss) on val SRCC and hard-pair accuracy.

With --finetuning (`make compare-finetuning`: LoRA vs full), one table per trained model (sft, dpo) sets
each run's training and validation loss beside its downstream metrics, and says whether ranking by
validation loss would have picked the same run as ranking by val SRCC.

Reads `dvc exp show --json` (or --json FILE) for the experiments, their params and status, and each
experiment's own reports/metrics.json from its git commit (`dvc exp show` drops list-valued metrics such as
the bootstrap CIs). Writes a Markdown table with 95% CIs: SRCC's bootstrap CI from the evaluate stage,
the evaluate stage's image-bootstrap CI for hard-pair accuracy (a Wilson interval for runs that predate it).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from aesthetic_llm.errors import cli_entry
from aesthetic_llm.experiments.compare import collect, exp_show, filter_experiments, render, render_finetuning
from aesthetic_llm.io_utils import atomic_write_text


@cli_entry
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--json", type=Path, default=None, help="saved `dvc exp show --json` output (default: run it)")
    ap.add_argument("--out", type=Path, default=Path("reports/experiments.md"))
    ap.add_argument("--metrics", default="reports/metrics.json", help="the evaluate stage's metrics file")
    ap.add_argument("--params-file", default="params.yaml")
    ap.add_argument("--model", default="dpo", help="which model's metrics to rank (metrics.json models.<model>)")
    ap.add_argument("--include-workspace", action="store_true", help="also list the uncommitted workspace")
    ap.add_argument(
        "--rev", action="append", help="baseline commit whose experiments to include (repeatable; default HEAD)"
    )
    ap.add_argument("--match", default="*", help="only experiments whose name matches this glob (baselines always)")
    ap.add_argument("--finetuning", action="store_true", help="LoRA-vs-full tables for sft and dpo (losses + metrics)")
    args = ap.parse_args()
    show = exp_show(args.json, args.rev)
    if args.match != "*":
        show = filter_experiments(show, args.match)
    if args.finetuning:
        by_model, skipped_all = {}, []
        for model in ("sft", "dpo"):
            by_model[model], skipped = collect(show, args.metrics, args.params_file, model, args.include_workspace)
            skipped_all += skipped
        atomic_write_text(args.out, render_finetuning(by_model, skipped_all))
        atomic_write_text(
            args.out.with_suffix(".json"), json.dumps({"runs": by_model, "skipped": skipped_all}, indent=2)
        )
        print(f"{sum(map(len, by_model.values()))} model runs compared -> {args.out}")
        return
    rows, skipped = collect(show, args.metrics, args.params_file, args.model, args.include_workspace)
    atomic_write_text(args.out, render(rows, skipped, args.model))
    atomic_write_text(args.out.with_suffix(".json"), json.dumps({"ranking": rows, "skipped": skipped}, indent=2))
    print(f"{len(rows)} runs ranked ({len(skipped)} skipped) -> {args.out}")


if __name__ == "__main__":
    main()
