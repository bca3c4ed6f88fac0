#!/usr/bin/env python
"""DVC stage `report`: reports/report.md with the results table and figures."""

import argparse
from pathlib import Path

import yaml

from aesthetic_llm.errors import cli_entry
from aesthetic_llm.io_utils import atomic_write_text
from aesthetic_llm.params import Params
from aesthetic_llm.report import build_report


@cli_entry
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", type=Path, default=Path("reports/report.md"))
    args = ap.parse_args()
    p = Params.load(args.params)
    atomic_write_text(args.out.parent / "params_used.yaml", yaml.safe_dump(p.data, sort_keys=False))
    build_report(
        Path("reports/metrics.json"),
        Path(p.str("score.out")),
        Path("reports/train"),
        Path(p.str("data.out_dir")) / "stats.json",
        args.out,
        p.data,
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
