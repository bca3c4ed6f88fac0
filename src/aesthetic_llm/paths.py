"""Where per-seed outputs live: one folder per training seed under each stage's root, named alike everywhere."""

from __future__ import annotations

from pathlib import Path

TRAIN_REPORTS = Path("reports/train")


def seed_dir(root: str | Path, seed: int) -> Path:
    """`<root>/seed<N>`: a trained model, its training reports or its DPO data for one training seed."""
    return Path(root) / f"seed{seed}"


def train_reports(seed: int, root: str | Path = TRAIN_REPORTS) -> Path:
    return seed_dir(root, seed)


def predictions_file(out_dir: str | Path, seed: int | None) -> Path:
    """The score stages' files: `base.csv` (models not trained here) and `seed<N>.csv` (one per seed)."""
    return Path(out_dir) / ("base.csv" if seed is None else f"seed{seed}.csv")
