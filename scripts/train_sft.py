#!/usr/bin/env python
"""DVC stage `sft@<seed>`: CoT supervised fine-tuning with llamafactory-cli from the base model, one training seed."""

import json

from aesthetic_llm.errors import cli_entry
from aesthetic_llm.params import stage_args
from aesthetic_llm.paths import seed_dir, train_reports
from aesthetic_llm.train.settings import stage_settings
from aesthetic_llm.train.stage import train_stage


@cli_entry
def main() -> None:
    p, args = stage_args(__doc__, seeded=True)
    settings, selection = stage_settings(p, "sft")
    summary = train_stage(
        settings,
        p.str("model.name_or_path"),
        seed=args.seed,
        out_dir=seed_dir(p.str("sft.output_dir"), args.seed),
        reports_dir=train_reports(args.seed),
        selection=selection,
    )
    print(json.dumps({k: v for k, v in summary.items() if k != "environment"}))


if __name__ == "__main__":
    main()
