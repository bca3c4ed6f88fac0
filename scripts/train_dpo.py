#!/usr/bin/env python
"""DVC stage `dpo@<seed>`: preference optimisation (LLaMA-Factory stage dpo) from the same seed's SFT model."""

import json

from aesthetic_llm.errors import cli_entry
from aesthetic_llm.params import stage_args
from aesthetic_llm.paths import seed_dir, train_reports
from aesthetic_llm.train.settings import stage_settings
from aesthetic_llm.train.stage import train_stage


@cli_entry
def main() -> None:
    p, args = stage_args(__doc__, seeded=True)
    settings, selection = stage_settings(p, "dpo")
    summary = train_stage(
        settings,
        seed_dir(p.str("sft.output_dir"), args.seed),
        seed=args.seed,
        out_dir=seed_dir(p.str("dpo.output_dir"), args.seed),
        reports_dir=train_reports(args.seed),
        dataset={"dataset_dir": str(seed_dir(p.str("dpo.data_dir"), args.seed))},
        selection=selection,
    )
    print(json.dumps({k: v for k, v in summary.items() if k != "environment"}))


if __name__ == "__main__":
    main()
