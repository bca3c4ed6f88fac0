#!/usr/bin/env python
"""DVC stage `report`: reports/report.md with the results over training seeds, comparisons and figures."""

import argparse
from pathlib import Path

import yaml

from aesthetic_llm.errors import cli_entry
from aesthetic_llm.evaluation.report import build_report
from aesthetic_llm.io_utils import atomic_write_text
from aesthetic_llm.params import Params, training_seeds
from aesthetic_llm.paths import predictions_file, seed_dir, train_reports


@cli_entry
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", type=Path, default=Path("reports/report.md"))
    args = ap.parse_args()
    p = Params.load(args.params)
    seeds = training_seeds(p)
    atomic_write_text(args.out.parent / "params_used.yaml", yaml.safe_dump(p.data, sort_keys=False))
    build_report(
        Path("reports/metrics.json"),
        [predictions_file(p.str("score.out_dir"), s) for s in (None, *seeds)],
        {s: train_reports(s) for s in seeds},
        Path(p.str("data.out_dir")) / "stats.json",
        args.out,
        p.data,
        {s: seed_dir(p.str("dpo.data_dir"), s) / "pair_stats.json" for s in seeds},
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
