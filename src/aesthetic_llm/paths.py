"""Repository paths the code names (the rest come from params.yaml or argv) and the per-seed output layout."""

from __future__ import annotations

from pathlib import Path

TRAIN_REPORTS = Path("reports/train")  # training logs, configs and summaries, one folder per seed
INIT_MODEL = Path("models/init")  # the `model` stage's random-init tiny Qwen2-VL (dvc.yaml passes it as --out)
# The API critic's answers by content key: outside the annotate stage's outs, which DVC deletes before a rerun.
API_CACHE = Path("data/cache/annotate_api.jsonl")


def seed_dir(root: str | Path, seed: int) -> Path:
    """`<root>/seed<N>`: a trained model, its training reports or its DPO data for one training seed."""
    return Path(root) / f"seed{seed}"


def train_reports(seed: int, root: str | Path = TRAIN_REPORTS) -> Path:
    return seed_dir(root, seed)


def predictions_file(out_dir: str | Path, seed: int | None) -> Path:
    """The score stages' files: `base.csv` (models not trained here) and `seed<N>.csv` (one per seed)."""
    return Path(out_dir) / ("base.csv" if seed is None else f"seed{seed}.csv")
