"""Finished splits: manifests written, the hard set and hard pairs derived from test, disjointness checked, stats.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from aesthetic_llm.data.manifest import SPLITS, manifest_path
from aesthetic_llm.errors import UserError
from aesthetic_llm.io_utils import write_csv, write_json
from aesthetic_llm.params import Params

MANIFEST_FIELDS = ["image_id", "path", "mos", "split", "source", "degradations"]


def hard_pairs(ids: list[str], mos: list[float], max_delta: float) -> list[tuple[str, str, float]]:
    """All pairs with 0 < |Δmos| <= max_delta (ordered by id), for pairwise accuracy on close scores."""
    order = np.argsort(mos, kind="stable")
    pairs = []
    for a_pos, a in enumerate(order):
        for b in order[a_pos + 1 :]:
            delta = mos[b] - mos[a]
            if delta > max_delta:
                break
            if delta > 0:
                i, j = sorted((ids[a], ids[b]))
                pairs.append((i, j, round(abs(delta), 4)))
    return sorted(pairs)


def finish_splits(
    params: Params,
    out_dir: Path,
    rows_by_split: dict[str, list[dict[str, Any]]],
    assignment: dict[str, list[str]],
    extra_stats: dict[str, Any] | None = None,
    fields: list[str] | None = None,
) -> dict[str, Any]:
    """Write manifests, derive the hard set and hard pairs from `test`, check disjointness, return stats.

    `fields` overrides the manifest columns (AVA rows carry votes/vote_std); `extra_stats` is merged
    into stats.json (dataset-specific counts, skipped images, throughput).
    """
    lo, hi = (float(x) for x in params.list("data.hard_band"))
    max_delta = params.num("data.hard_pair_max_delta", lo=0.0)
    test = rows_by_split["test"]
    hard = [dict(r, split="hard") for r in test if lo <= float(r["mos"]) <= hi]
    rows_by_split["hard"] = hard
    seen: dict[str, str] = {}
    for split in SPLITS:
        for r in rows_by_split[split]:
            if r["image_id"] in seen:
                raise UserError(f"image {r['image_id']} appears in both {seen[r['image_id']]} and {split}")
            seen[r["image_id"]] = split
    for split, rows in rows_by_split.items():
        write_csv(manifest_path(out_dir, split), rows, fields or MANIFEST_FIELDS)
    pairs = hard_pairs([r["image_id"] for r in test], [float(r["mos"]) for r in test], max_delta)
    write_csv(
        Path(out_dir) / "hard_pairs.csv",
        [{"image_a": a, "image_b": b, "delta": d} for a, b, d in pairs],
        ["image_a", "image_b", "delta"],
    )
    stats = {
        "profile": params.profile,
        "seed": params.int("seed"),
        "sources": assignment,
        "counts": {s: len(r) for s, r in rows_by_split.items()},
        "hard_band": [lo, hi],
        "hard_pairs": len(pairs),
        "hard_pair_max_delta": max_delta,
        "mos_histogram": {
            s: np.histogram([float(r["mos"]) for r in rows], bins=9, range=(1, 10))[0].tolist()
            for s, rows in rows_by_split.items()
        },
    }
    stats.update(extra_stats or {})
    write_json(Path(out_dir) / "stats.json", stats)
    return stats
