#!/usr/bin/env python
"""DVC stage `data`: build per-split manifests, the hard set and the hard pairs."""

import argparse
import json

from aesthetic_llm.errors import cli_entry
from aesthetic_llm.params import Params
from aesthetic_llm.prepare import prepare


@cli_entry
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args()
    stats = prepare(Params.load(args.params))
    print(json.dumps(stats["counts"]))


if __name__ == "__main__":
    main()
