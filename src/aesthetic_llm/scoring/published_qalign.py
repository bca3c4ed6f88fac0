"""The published Q-Align / OneAlign checkpoints as reference rows: scored in their own environment.

Their hub modelling code (mPLUG-Owl2, LLaMA-2-7B) pins transformers 4.36, which cannot share the main
environment (transformers 5), so `make setup-qalign` builds .venv-qalign and this stage runs
`src/aesthetic_llm/scoring/qalign_worker.py` there, one process per checkpoint. On the demo profile the
stage is skipped with a message (7B checkpoints from the hub are not demo material) and writes an
empty predictions file, so the DAG is the same on both profiles.

`PUBLISHED_AVA` quotes the figures the authors published; the report prints them as reference
rows beside ours, labelled as quoted, never as computed here.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from aesthetic_llm.data.manifest import manifest_path
from aesthetic_llm.errors import UserError
from aesthetic_llm.io_utils import read_csv, write_csv, write_json
from aesthetic_llm.params import Params

FIELDS = ["image_id", "model", "split", "pred", "mos"]
WORKER = Path(__file__).resolve().parent / "qalign_worker.py"  # run by path in .venv-qalign, never imported

# Quoted from the publications (not computed by this repo); the report labels them so.
PUBLISHED_AVA: list[dict[str, Any]] = [
    {
        "model": "Q-Align (q-future/q-align-aesthetic, trained on AVA)",
        "dataset": "AVA test (official ~19.9k split)",
        "srcc": 0.822,
        "plcc": 0.817,
        "source": "Wu et al., Q-Align, ICML 2024 (arXiv:2312.17090), IAA results on AVA",
    },
    {
        "model": "Q-Align as reproduced by the study (partial AVA, 2x RTX 3090)",
        "dataset": "AVA subset",
        "srcc": 0.9129,
        "plcc": None,
        "source": "the study (shared/seeds/000), section 2.1",
    },
    {
        "model": "Q-Align on AADB as measured by the study (unseen)",
        "dataset": "AADB (unseen)",
        "srcc": 0.6557,
        "plcc": None,
        "source": "the study (shared/seeds/000), section 4",
    },
]


def run(params: Params, out: Path, python: str | None = None) -> dict[str, Any]:
    """Score every configured checkpoint on the configured splits; returns the stage summary."""
    if not params.bool("published_qalign.enabled"):
        write_csv(out, [], FIELDS)
        reason = (
            f"published_qalign skipped on the {params.profile} profile (published_qalign.enabled is false): "
            "the published checkpoints are 7B mPLUG-Owl2 models from the hub; the paper profile scores them "
            "after `make setup-qalign`"
        )
        print(reason, flush=True)
        return {"skipped": reason, "rows": 0}
    py = python or params.str("published_qalign.python")
    if not Path(py).exists():
        raise UserError(
            f"{params.source}: published_qalign.python: {py} not found (run `make setup-qalign`, or set "
            "published_qalign.enabled: false)"
        )
    data_dir = Path(params.str("data.out_dir"))
    splits = params.list("published_qalign.splits")
    models = params.section("published_qalign.models")
    if not models:
        raise UserError(f"{params.source}: published_qalign.models is empty")
    partial = out.with_suffix(".partial.csv")  # the workers' resumable log; the stage output is written last
    for name, model_id in models.items():
        cmd = [py, str(WORKER), "--model", str(model_id), "--name", str(name), "--out", str(partial)]
        cmd += ["--task", params.str("published_qalign.task"), "--dtype", params.str("published_qalign.dtype")]
        cmd += ["--batch-size", str(params.int("published_qalign.batch_size", lo=1))]
        for split in splits:
            cmd += ["--manifest", f"{split}={manifest_path(data_dir, split)}"]
        proc = subprocess.run(cmd, check=False, stdout=sys.stdout, stderr=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise UserError(f"published_qalign: {name} ({model_id}) failed: {tail}")
    rows = read_csv(partial, required=FIELDS)
    hard_ids = {r["image_id"] for r in read_csv(manifest_path(data_dir, "hard"), required=("image_id",))}
    rows += [dict(r, split="hard") for r in rows if r["split"] == "test" and r["image_id"] in hard_ids]
    write_csv(out, rows, FIELDS)
    summary = {"rows": len(rows), "models": models, "splits": splits}
    write_json(out.with_suffix(".json"), summary)
    return summary
