"""The append-only, fsynced JSONL answer log: reading, appending, records, the cache and the failures file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from aesthetic_llm.annotate.api_config import ApiConfig, Item
from aesthetic_llm.annotate.validate import validate_answer
from aesthetic_llm.prompts import PROMPT_VERSION


# -- append-only JSONL log ------------------------------------------------------------------------
def load_log(path: Path, repair: bool = True) -> tuple[list[dict[str, Any]], int]:
    """Complete records of an append-only JSONL file and how many bad lines were skipped. A torn trailing
    line (a kill mid-write) is ignored and, with repair, truncated so later appends start on a fresh line."""
    if not path.exists():
        return [], 0
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data) and repair:
        with path.open("r+b") as fh:
            fh.truncate(end)
            fh.flush()
            os.fsync(fh.fileno())
    rows, bad = [], int(end < len(data))
    for line in data[:end].splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            bad += 1
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows, bad


class AppendLog:
    """One complete JSON line per os.write on an O_APPEND fd, fsynced before the next answer is trusted."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)

    def append(self, record: dict[str, Any]) -> None:
        data = (json.dumps(record, ensure_ascii=False) + "\n").encode()
        while data:  # a regular file takes it all at once; the loop only guards partial writes
            data = data[os.write(self.fd, data) :]
        os.fsync(self.fd)

    def close(self) -> None:
        os.close(self.fd)


def make_record(item: Item, critique: str, props: dict[str, float], cfg: ApiConfig, usage: dict) -> dict[str, Any]:
    return {
        "image_id": item.image_id,
        "path": item.path,
        "mos": item.mos,
        "level": item.level,
        "critique": critique,
        "properties": props,  # the DPO stage writes its rejected critiques from these
        "backend": "api",
        "prompt_version": PROMPT_VERSION,
        "model": cfg.model,
        "usage": usage,
        "image_sha256": item.image_sha256,
        "cache_key": item.key,
    }


def load_cache(path: Path, cfg: ApiConfig, repair: bool) -> tuple[dict[str, dict[str, Any]], int]:
    """cache key -> record, keeping only records that still pass validation."""
    rows, bad = load_log(path, repair=repair)
    cache = {}
    for r in rows:
        key, critique, level = r.get("cache_key"), r.get("critique"), r.get("level")
        typed = isinstance(key, str) and isinstance(critique, str) and isinstance(level, int)
        if typed and validate_answer(critique, level, cfg.num_levels)[0] is not None:
            cache[key] = r
    return cache, bad


def failures_path(out: Path) -> Path:
    return out.with_name(out.name + ".failures.jsonl")
