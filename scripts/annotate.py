#!/usr/bin/env python
"""DVC stage `annotate`: write a CoT critique for every image of the annotated splits."""

import argparse
import json

from aesthetic_llm.annotate import annotate
from aesthetic_llm.errors import cli_entry
from aesthetic_llm.params import Params


@cli_entry
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args()
    print(json.dumps(annotate(Params.load(args.params))))


if __name__ == "__main__":
    main()
