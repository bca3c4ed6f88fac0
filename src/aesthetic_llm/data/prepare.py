"""The data stage: per-split manifests (`image_id,path,mos,split,…`), the hard set and hard pairs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from aesthetic_llm.data.demo import SEEN_DEGRADATIONS, SOURCES, hard_pairs, load_sources, make_sample
from aesthetic_llm.errors import UserError
from aesthetic_llm.io_utils import write_csv, write_json
from aesthetic_llm.data.manifest import SPLITS, manifest_path
from aesthetic_llm.params import Params

MANIFEST_FIELDS = ["image_id", "path", "mos", "split", "source", "degradations"]


def assign_sources(params: Params) -> dict[str, list[str]]:
    names = sorted({s.name for s in SOURCES})
    held: dict[str, list[str]] = {}
    for split in ("val", "test", "unseen"):
        chosen = params.list(f"data.split_sources.{split}")
        unknown = [n for n in chosen if n not in names]
        if unknown:
            raise UserError(
                f"{params.source}: data.split_sources.{split}: unknown source(s) {unknown} (known: {names})"
            )
        held[split] = list(chosen)
    flat = [n for v in held.values() for n in v]
    dupes = sorted({n for n in flat if flat.count(n) > 1})
    if dupes:
        raise UserError(f"{params.source}: data.split_sources: {dupes} listed in more than one split")
    held["train"] = [n for n in names if n not in flat]
    if not held["train"]:
        raise UserError(f"{params.source}: data.split_sources: no source photo left for train")
    return held


def prepare_demo(params: Params, out_dir: Path) -> dict[str, Any]:
    size = params.int("data.image_size", lo=28)
    seed = params.int("seed")
    unseen_kinds = tuple(params.list("data.unseen_degradations"))
    max_types = params.int("data.max_degradations", lo=1)
    reference = params.bool("data.reference_crops")
    sources = load_sources()
    assignment = assign_sources(params)
    if out_dir.exists():
        shutil.rmtree(out_dir)  # a DVC out: always rebuilt whole, never half-updated
    rows_by_split: dict[str, list[dict[str, Any]]] = {}
    for split_idx, split in enumerate(SPLITS):
        per_source = params.int(f"data.crops_per_source.{split}", lo=1)
        kinds = SEEN_DEGRADATIONS + unseen_kinds if split == "unseen" else SEEN_DEGRADATIONS
        rows = []
        for src_idx, name in enumerate(assignment[split]):
            # One generator per (split, source): adding a source does not reshuffle the others.
            rng = np.random.default_rng([seed, split_idx, src_idx])
            views = sources[name]
            for k in range(per_source):
                image_id = f"{split}-{name}-{k:04d}"
                sample = make_sample(image_id, name, views[k % len(views)], kinds, size, rng, max_types, reference)
                rel = Path(out_dir) / "images" / split / f"{image_id}.png"
                rel.parent.mkdir(parents=True, exist_ok=True)
                sample.image.save(rel, format="PNG")
                rows.append(
                    {
                        "image_id": image_id,
                        "path": rel.as_posix(),
                        "mos": sample.mos,
                        "split": split,
                        "source": name,
                        "degradations": json.dumps({k: round(v, 4) for k, v in sample.degradations.items()}),
                    }
                )
        rows_by_split[split] = rows
    return finish_splits(params, out_dir, rows_by_split, assignment)


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


def prepare(params: Params) -> dict[str, Any]:
    out_dir = Path(params.str("data.out_dir"))
    dataset = params.str("data.dataset", choices=("demo", "ava"))
    if dataset == "demo":
        return prepare_demo(params, out_dir)
    from aesthetic_llm.data.ava import prepare_paper  # AVA (+ AADB as unseen), from disk or downloaded

    return prepare_paper(params, out_dir)
