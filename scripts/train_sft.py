#!/usr/bin/env python
"""DVC stage `sft`: CoT supervised fine-tuning with llamafactory-cli from the base model."""

import json

from aesthetic_llm.errors import cli_entry
from aesthetic_llm.params import stage_args
from aesthetic_llm.train import train_stage


@cli_entry
def main() -> None:
    p, _ = stage_args(__doc__)
    print(json.dumps(train_stage(p, "sft", p.str("model.name_or_path"))))


if __name__ == "__main__":
    main()
