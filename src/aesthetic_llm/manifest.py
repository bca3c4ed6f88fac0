"""Where the data stage writes each split's manifest: the one thing every later stage needs from it."""

from __future__ import annotations

from pathlib import Path

SPLITS = ("train", "val", "test", "unseen")


def manifest_path(out_dir: str | Path, split: str) -> Path:
    return Path(out_dir) / split / "manifest.csv"
