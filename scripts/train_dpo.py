#!/usr/bin/env python
"""DVC stage `dpo`: preference optimisation (LLaMA-Factory stage dpo) starting from the SFT model."""

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
    print(json.dumps(train_stage(p, "dpo", p.str("sft.output_dir"))))


if __name__ == "__main__":
    main()
