"""The split contract every later stage reads from the data stage: manifest paths and source photos."""

from __future__ import annotations

import re
from pathlib import Path

SPLITS = ("train", "val", "test", "unseen")
_DEMO_ID = re.compile(r"(?:train|val|test|unseen)-(.+)-\d+")


def manifest_path(out_dir: str | Path, split: str) -> Path:
    return Path(out_dir) / split / "manifest.csv"


def source_group(image_id: str) -> str:
    """The unit a split must not cut and a bootstrap resamples: the source photo on the demo
    ('train-brick-0007' -> 'brick'), else the image itself."""
    m = _DEMO_ID.fullmatch(image_id)
    return m.group(1) if m else image_id
