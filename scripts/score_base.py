#!/usr/bin/env python
"""DVC stage `score_base`: the base model as it is (zero-shot, and Q-Align's method on it), scored once."""

import json

from aesthetic_llm.errors import cli_entry
from aesthetic_llm.params import stage_args
from aesthetic_llm.paths import predictions_file
from aesthetic_llm.scoring.settings import ScoreSettings, model_table
from aesthetic_llm.scoring.stage import score_all


@cli_entry
def main() -> None:
    p, _ = stage_args(__doc__)
    settings, models = ScoreSettings.from_params(p, None), model_table(p, None)
    print(json.dumps(score_all(settings, models, predictions_file(p.str("score.out_dir"), None), None)))


if __name__ == "__main__":
    main()
