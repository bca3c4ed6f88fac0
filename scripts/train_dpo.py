#!/usr/bin/env python
"""DVC stage `dpo`: preference optimisation (LLaMA-Factory stage dpo) starting from the SFT model."""

import json

from aesthetic_llm.errors import cli_entry
from aesthetic_llm.params import stage_args
from aesthetic_llm.train import train_stage


@cli_entry
def main() -> None:
    p, _ = stage_args(__doc__)
    print(json.dumps(train_stage(p, "dpo", p.str("sft.output_dir"))))


if __name__ == "__main__":
    main()
