#!/usr/bin/env python
"""DVC stage `qalign_style@<seed>`: the no-CoT ablation — the SFT recipe and hyper-parameters, but the
answer is the plain "Rating Level: N" (Q-Align-style training, no critique). Scored in `direct` mode."""

import json

from aesthetic_llm.errors import cli_entry
from aesthetic_llm.params import stage_args
from aesthetic_llm.paths import seed_dir, train_reports
from aesthetic_llm.train.datasets import PLAIN_DATASET, PLAIN_VAL_DATASET
from aesthetic_llm.train.settings import stage_settings
from aesthetic_llm.train.stage import train_stage


@cli_entry
def main() -> None:
    p, args = stage_args(__doc__, seeded=True)
    settings, selection = stage_settings(p, "sft", score_mode="direct")  # the plain answer: scored directly
    summary = train_stage(
        settings,
        p.str("model.name_or_path"),
        seed=args.seed,
        out_dir=seed_dir(p.str("qalign_style.output_dir"), args.seed),
        reports_dir=train_reports(args.seed),
        name="qalign_style",
        dataset={"dataset": PLAIN_DATASET, "eval_dataset": PLAIN_VAL_DATASET},
        selection=selection,
    )
    print(json.dumps({k: v for k, v in summary.items() if k != "environment"}))


if __name__ == "__main__":
    main()
