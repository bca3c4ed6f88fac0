"""AVA and AADB label files parsed by streaming (MOS per image), and images checked by decoding in worker processes."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from aesthetic_llm.errors import UserError

AVA_LABELS = "AVA.txt"
AADB_LABEL_DIR = "imgListFiles_label"
AADB_LISTS = ("Train", "Validation", "Test", "TestNew")
AADB_IMAGE_DIRS = ("datasetImages_originalSize", "datasetImages_warp256", "AADB_newtest")
AADB_MAPPING = "mos = 1 + 9 * score"
_ID = re.compile(r"[A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class Item:
    image_id: str
    path: str
    mos: float
    source: str
    line: int
    votes: int | None = None
    vote_std: float | None = None

    def row(self, split: str) -> dict[str, Any]:
        return {
            "image_id": self.image_id,
            "path": self.path,
            "mos": self.mos,
            "split": split,
            "votes": "" if self.votes is None else self.votes,
            "vote_std": "" if self.vote_std is None else round(self.vote_std, 6),
            "source": self.source,
            "line": self.line,
        }


def problem(source: str, file: str | Path, line: int, kind: str, reason: str, image_id: str = "") -> dict[str, Any]:
    return {"source": source, "file": str(file), "line": line, "image_id": image_id, "kind": kind, "reason": reason}


# -- parsing (streaming) ---------------------------------------------------------------------------
def parse_ava(labels: Path, images_dir: Path) -> Iterator[Item | dict[str, Any]]:
    """Yield an Item per good line of AVA.txt, or a problem dict (malformed/duplicate) with its line number."""
    if not labels.is_file():
        raise UserError(f"{labels}: AVA label file not found")
    seen: set[str] = set()
    with labels.open(encoding="utf-8", errors="replace") as fh:
        for lineno, raw in enumerate(fh, 1):
            fields = raw.split()
            if not fields:
                continue
            image_id = fields[1] if len(fields) > 1 else ""
            if len(fields) != 15:
                yield problem("ava", labels, lineno, "malformed", f"expected 15 fields, got {len(fields)}", image_id)
                continue
            if not _ID.fullmatch(image_id):
                yield problem("ava", labels, lineno, "malformed", f"bad image id {image_id!r}", image_id)
                continue
            try:
                counts = [int(c) for c in fields[2:12]]
            except ValueError:
                yield problem("ava", labels, lineno, "malformed", "vote counts are not integers", image_id)
                continue
            total = sum(counts)
            if min(counts) < 0 or total == 0:
                yield problem("ava", labels, lineno, "malformed", "vote counts negative or all zero", image_id)
                continue
            if image_id in seen:
                yield problem("ava", labels, lineno, "duplicate", "image id listed earlier", image_id)
                continue
            seen.add(image_id)
            mos = sum(i * c for i, c in enumerate(counts, 1)) / total
            var = sum(c * (i - mos) ** 2 for i, c in enumerate(counts, 1)) / total
            path = (images_dir / f"{image_id}.jpg").as_posix()
            yield Item(image_id, path, mos, "ava", lineno, votes=total, vote_std=var**0.5)


def parse_aadb(root: Path, which: str) -> Iterator[Item | dict[str, Any]]:
    """Yield Items (mos = 1 + 9·score) or problems from imgList<which>Regression_score.txt."""
    labels = root / AADB_LABEL_DIR / f"imgList{which}Regression_score.txt"
    if not labels.is_file():
        raise UserError(f"{labels}: AADB label file not found")
    seen: set[str] = set()
    with labels.open(encoding="utf-8", errors="replace") as fh:
        for lineno, raw in enumerate(fh, 1):
            fields = raw.split()
            if not fields:
                continue
            name = fields[0]
            try:
                if len(fields) != 2:
                    raise ValueError(f"expected 2 fields, got {len(fields)}")
                score = float(fields[1])
                if not 0.0 <= score <= 1.0:
                    raise ValueError(f"score {score} outside [0, 1]")
                if "/" in name or "\\" in name or name.startswith("."):
                    raise ValueError(f"bad image name {name!r}")
            except ValueError as exc:
                yield problem("aadb", labels, lineno, "malformed", str(exc), name)
                continue
            image_id = f"aadb_{Path(name).stem}"  # prefixed: never collides with an AVA id
            if image_id in seen:
                yield problem("aadb", labels, lineno, "duplicate", "image listed earlier", image_id)
                continue
            seen.add(image_id)
            found = next((root / d / name for d in AADB_IMAGE_DIRS if (root / d / name).exists()), None)
            path = (found or root / AADB_IMAGE_DIRS[0] / name).as_posix()  # a missing image fails validation
            yield Item(image_id, path, 1.0 + 9.0 * score, "aadb", lineno)


# -- image validation (parallel) -------------------------------------------------------------------
def check_image(path: str) -> str | None:
    """None if the image decodes fully; else the reason. verify() alone misses truncated JPEG data."""
    try:
        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:
            im.draft("RGB", (1, 1))  # JPEG: decode at 1/8 scale; still reads every byte of the scan
            im.load()
    except FileNotFoundError:
        return "missing: file not found"
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        return f"corrupt: {exc}"
    return None


class ImageChecker:
    """Checks image batches in `workers` processes (one pool for the whole run) and times it. Each path is
    decoded once per run: a second selection pass (scaled subsets) reuses the verdicts."""

    def __init__(self, workers: int = 2) -> None:
        self.workers = max(1, workers)
        self.pool = ProcessPoolExecutor(self.workers) if self.workers > 1 else None
        self.count = 0
        self.seconds = 0.0
        self.results: dict[str, str | None] = {}

    def __enter__(self) -> ImageChecker:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)

    def check(self, paths: Sequence[str]) -> list[str | None]:
        todo = [p for p in dict.fromkeys(paths) if p not in self.results]
        if todo:
            t0 = time.perf_counter()
            if self.pool is None:
                out = [check_image(p) for p in todo]
            else:
                chunk = max(1, min(64, len(todo) // (self.workers * 4)))
                out = list(self.pool.map(check_image, todo, chunksize=chunk))
            self.results.update(zip(todo, out, strict=True))
            self.seconds += time.perf_counter() - t0
            self.count += len(todo)
        return [self.results[p] for p in paths]
