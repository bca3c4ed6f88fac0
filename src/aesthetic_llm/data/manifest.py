"""The split contract every later stage reads from the data stage: manifest paths, rows and source photos."""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from aesthetic_llm.errors import UserError

SPLITS = ("train", "val", "test", "unseen")
REQUIRED = ("image_id", "path", "mos")
_DEMO_ID = re.compile(r"(?:train|val|test|unseen)-(.+)-\d+")


def manifest_path(out_dir: str | Path, split: str) -> Path:
    return Path(out_dir) / split / "manifest.csv"


@dataclass(frozen=True)
class ManifestRow:
    """One image of a split, with the manifest line it came from so that any later error can name it."""

    image_id: str
    path: str
    mos: float
    mos_text: str  # the MOS as the manifest writes it: copied into outputs unchanged
    source: Path
    line: int

    def where(self) -> str:
        return f"{self.source}:{self.line}"


def read_manifest(path: str | Path) -> list[ManifestRow]:
    """Every row of a manifest; a missing column, empty or repeated id, or non-numeric MOS is a one-line error
    naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: file not found (run the data stage first: dvc repro data)")
    rows: list[ManifestRow] = []
    seen: set[str] = set()
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise UserError(f"{path}: missing column(s) {', '.join(missing)} (header: {','.join(reader.fieldnames or [])})")
        for raw in reader:
            line = reader.line_num
            image_id, mos_text = (raw["image_id"] or "").strip(), raw["mos"] or ""
            if not image_id:
                raise UserError(f"{path}:{line}: image_id: empty")
            if image_id in seen:
                raise UserError(f"{path}:{line}: duplicate image_id {image_id}")
            try:
                mos = float(mos_text)
            except ValueError:
                mos = math.nan
            if not math.isfinite(mos):
                raise UserError(f"{path}:{line}: mos: expected a number, got {mos_text!r}")
            seen.add(image_id)
            rows.append(ManifestRow(image_id, raw["path"] or "", mos, mos_text, path, line))
    return rows


def open_images(rows: list[ManifestRow]) -> list[Image.Image]:
    """The rows' images as RGB; an unreadable one is a one-line error naming its manifest line."""
    images = []
    for r in rows:
        try:
            with Image.open(r.path) as im:
                images.append(im.convert("RGB"))
        except (FileNotFoundError, OSError) as exc:
            raise UserError(f"{r.where()}: cannot read image {r.path} ({exc.__class__.__name__})") from None
    return images


def source_group(image_id: str) -> str:
    """The unit a split must not cut and a bootstrap resamples: the source photo on the demo
    ('train-brick-0007' -> 'brick'), else the image itself."""
    m = _DEMO_ID.fullmatch(image_id)
    return m.group(1) if m else image_id
