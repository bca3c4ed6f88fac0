#!/usr/bin/env python
"""DVC stage `score`: level-probability scores of zero-shot / SFT / DPO models on every eval split."""

import argparse
import json
from pathlib import Path

from aesthetic_llm.errors import cli_entry
from aesthetic_llm.params import Params
from aesthetic_llm.predict import score_all


@cli_entry
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args()
    p = Params.load(args.params)
    print(json.dumps(score_all(p, Path(p.str("score.out")))))


if __name__ == "__main__":
    main()
