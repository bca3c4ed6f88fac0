#!/usr/bin/env python
"""DVC stage `qalign_style`: the no-CoT ablation — the SFT recipe and hyper-parameters, but the answer
is the plain "Rating Level: N" (Q-Align-style training, no critique). Scored in `direct` mode."""

import json

from aesthetic_llm.errors import cli_entry
from aesthetic_llm.lf_data import PLAIN_DATASET, PLAIN_VAL_DATASET
from aesthetic_llm.params import stage_args
from aesthetic_llm.train import train_stage


@cli_entry
def main() -> None:
    p, _ = stage_args(__doc__)
    summary = train_stage(
        p,
        "sft",
        p.str("model.name_or_path"),
        name="qalign_style",
        dataset={"dataset": PLAIN_DATASET, "eval_dataset": PLAIN_VAL_DATASET},
        score_mode="direct",
    )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
