#!/usr/bin/env python
"""DVC stage `published_qalign`: the published Q-Align / OneAlign checkpoints scored in .venv-qalign.

Paper profile: runs src/aesthetic_llm/scoring/qalign_worker.py in the environment `make setup-qalign` builds
(transformers 4.36) for each checkpoint in published_qalign.models, on published_qalign.splits.
Demo profile: skipped with a message; writes an empty predictions file.
"""

import json
from pathlib import Path

from aesthetic_llm.errors import cli_entry
from aesthetic_llm.params import stage_args
from aesthetic_llm.scoring.published_qalign import run


@cli_entry
def main() -> None:
    p, _ = stage_args(__doc__)
    print(json.dumps(run(p, Path(p.str("published_qalign.out")))))


if __name__ == "__main__":
    main()
