#!/usr/bin/env python
"""DVC stage `sft`: CoT supervised fine-tuning with llamafactory-cli from the base model."""

import argparse
import json

from aesthetic_llm.errors import cli_entry
from aesthetic_llm.params import Params
from aesthetic_llm.train import train_stage


@cli_entry
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args()
    p = Params.load(args.params)
    print(json.dumps(train_stage(p, "sft", p.str("model.name_or_path"))))


if __name__ == "__main__":
    main()
