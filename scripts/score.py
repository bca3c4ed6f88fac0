#!/usr/bin/env python
"""DVC stage `score`: level-probability scores of zero-shot / SFT / DPO models on every eval split."""

import json
from pathlib import Path

from aesthetic_llm.errors import cli_entry
from aesthetic_llm.params import stage_args
from aesthetic_llm.predict import score_all


@cli_entry
def main() -> None:
    p, _ = stage_args(__doc__)
    print(json.dumps(score_all(p, Path(p.str("score.out")))))


if __name__ == "__main__":
    main()
