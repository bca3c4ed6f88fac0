#!/usr/bin/env python
"""`make rehearse`: the paper profile end to end on CPU (real `dvc repro` in rehearsal/workspace), with the
stand-ins listed in configs/rehearsal.yaml and nothing else changed. Writes rehearsal/reports/ (metrics.json
with the overrides, report.md, the data stage's stats.json, the annotation summary) and rehearsal/dvc_repro.log.

    python scripts/rehearse.py [--out rehearsal] [--overrides configs/rehearsal.yaml]
"""

import argparse
import json
from pathlib import Path

from aesthetic_llm.errors import cli_entry
from aesthetic_llm.rehearsal.run import rehearse

ROOT = Path(__file__).resolve().parents[1]


@cli_entry
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "rehearsal", help="output folder (rebuilt on every run)")
    ap.add_argument("--overrides", type=Path, default=ROOT / "configs/rehearsal.yaml", help="the stand-ins")
    args = ap.parse_args()
    record = rehearse(ROOT, args.out, args.overrides)
    print(json.dumps({k: record[k] for k in ("seconds", "planted_problems", "critic_server")}))


if __name__ == "__main__":
    main()
