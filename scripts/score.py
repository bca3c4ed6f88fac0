#!/usr/bin/env python
"""DVC stage `score@<seed>`: level-probability scores of one training seed's models (no-CoT, SFT, DPO)."""

import json
from pathlib import Path

from aesthetic_llm.errors import cli_entry
from aesthetic_llm.params import stage_args
from aesthetic_llm.paths import predictions_file
from aesthetic_llm.scoring.settings import ScoreSettings, model_table
from aesthetic_llm.scoring.stage import score_all


@cli_entry
def main() -> None:
    p, args = stage_args(__doc__, seeded=True)
    out = predictions_file(p.str("score.out_dir"), args.seed)
    settings, models = ScoreSettings.from_params(p, args.seed), model_table(p, args.seed)
    print(json.dumps(score_all(settings, models, Path(out), args.seed)))


if __name__ == "__main__":
    main()
