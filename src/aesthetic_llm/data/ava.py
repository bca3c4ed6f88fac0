"""Paper-profile data: AVA (train/val/test) and AADB's official test split (unseen), validated and subset.

AVA.txt lines are `index image_id c1 … c10 tag1 tag2 challenge_id` (c_i = votes for score i), so
MOS = Σ i·c_i / Σ c_i on 1–10. AADB lists are `<image name> <score in [0,1]>`, mapped to 1–10 by
mos = 1 + 9·score. Labels are parsed by streaming; images are checked (decode, not just the header)
in worker processes, and only as many as the seeded, MOS-stratified subsets need: a bad image is
skipped, reported with its line and reason, and replaced by the next candidate of its MOS stratum.

When the data holds fewer valid images than the subsets ask for, the AVA subset sizes are scaled down in
proportion (every split keeps at least one image; with the official test list, test keeps what the list
has and only val/train are scaled from the other images), said on stderr and recorded in stats.json as
`scaled_subsets`; too few images for one per split is an error. No split is ever silently empty.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from aesthetic_llm.data.ava_labels import (
    AADB_LABEL_DIR,
    AADB_LISTS,
    AADB_MAPPING,
    AVA_LABELS,
    ImageChecker,
    Item,
    parse_aadb,
    parse_ava,
    problem,
)
from aesthetic_llm.data.download import fetch_root, find_marker
from aesthetic_llm.data.splits import finish_splits
from aesthetic_llm.data.subset import AVA_SPLITS, fit_sizes, pick_valid, select_ava
from aesthetic_llm.errors import UserError
from aesthetic_llm.params import Params

PAPER_FIELDS = ["image_id", "path", "mos", "split", "votes", "vote_std", "source", "line"]
DEFAULT_SIZES = {"train": 1500, "val": 300, "test": 1000, "unseen": 1000}
MAX_LISTED = 1000  # problems listed one by one in stats.json; all are counted


# -- roots (on disk, or fetched) -------------------------------------------------------------------
def resolve_root(params: Params, name: str, marker: str, required: bool) -> Path | None:
    """The dataset root: as configured if it exists, else downloaded from data.<name>_url, else an error."""
    root_s = params.str(f"data.{name}_root", "")
    url = params.str(f"data.{name}_url", "")
    root = Path(root_s) if root_s else None
    if root is not None and root.exists():
        return root
    if url:
        download_dir = Path(params.str("data.download_dir", "data/downloads"))
        target = root if root is not None else download_dir / name
        if target.exists():  # fetched by an earlier run
            return target
        sha = params.str(f"data.{name}_sha256", "") or None
        return fetch_root(name, url, target, download_dir, sha, marker)
    if root is None and not required:
        return None
    raise UserError(
        f"{params.source}: data.{name}_root: {root_s or '(empty)'} does not exist "
        f"(profile {params.profile} needs it on disk; set profiles.{params.profile}.data.{name}_root or data.{name}_url)"
    )


def _locate(root: Path, marker: str) -> Path:
    if (root / marker).exists():
        return root
    return find_marker(root, marker) or root  # the parser then names the missing label file


def read_test_list(path: Path) -> set[str]:
    if not path.is_file():
        raise UserError(f"{path}: AVA test list not found")
    with path.open(encoding="utf-8") as fh:
        return {Path(tok).stem for line in fh if (tok := line.strip())}


# -- the stage ---------------------------------------------------------------------------------------
def collect(parser: Iterator[Item | dict[str, Any]], problems: list[dict[str, Any]]) -> list[Item]:
    items = []
    for rec in parser:
        if isinstance(rec, Item):
            items.append(rec)
        else:
            problems.append(rec)
    return items


def prepare_paper(params: Params, out_dir: Path) -> dict[str, Any]:
    seed = params.int("seed")
    strata = params.int("data.subset_strata", 9, lo=1)
    workers = params.int("data.workers", 2, lo=1)
    sizes = {s: params.int(f"data.subset_sizes.{s}", d, lo=0) for s, d in DEFAULT_SIZES.items()}
    ava_root = _locate(resolve_root(params, "ava", AVA_LABELS, required=True), AVA_LABELS)
    aadb_root = resolve_root(params, "aadb", AADB_LABEL_DIR, required=False)
    problems: list[dict[str, Any]] = []

    t0 = time.perf_counter()
    ava = collect(parse_ava(ava_root / AVA_LABELS, ava_root / "images"), problems)
    aadb: list[Item] = []
    aadb_lists = [str(w) for w in params.list("data.aadb_unseen_lists", ["Test"])]
    if aadb_root is not None:
        aadb_root = _locate(aadb_root, AADB_LABEL_DIR)
        for which in aadb_lists:
            if which not in AADB_LISTS:
                raise UserError(
                    f"{params.source}: data.aadb_unseen_lists: unknown list {which!r} (known: {AADB_LISTS})"
                )
            aadb += collect(parse_aadb(aadb_root, which), problems)
    parse_s = time.perf_counter() - t0
    parsed = {"ava": len(ava), "aadb": len(aadb), "malformed_or_duplicate": len(problems)}

    test_list_s = params.str("data.ava_test_list", "")
    test_ids: set[str] | None = None
    test_list: Path | None = None
    if test_list_s:
        test_list = Path(test_list_s) if Path(test_list_s).is_absolute() else ava_root / test_list_s
        test_ids = read_test_list(test_list)

    rows_by_split: dict[str, list[dict[str, Any]]] = {}
    skipped: list[dict[str, Any]] = []
    with ImageChecker(workers) as checker:
        if params.bool("data.validate_all", False):  # a full audit of the disk: every image is decoded once
            bad = {}
            everything = ava + aadb
            for start in range(0, len(everything), 4096):
                chunk = everything[start : start + 4096]
                for it, reason in zip(chunk, checker.check([it.path for it in chunk]), strict=True):
                    if reason is not None:
                        bad[it.image_id] = reason
                        kind, _, detail = reason.partition(": ")
                        skipped.append(problem(it.source, it.path, it.line, kind, detail, it.image_id))
            ava = [it for it in ava if it.image_id not in bad]
            aadb = [it for it in aadb if it.image_id not in bad]
        requested = {s: sizes[s] for s in AVA_SPLITS}
        audited = list(skipped)  # validate_all's verdicts, the same for both passes
        chosen = select_ava(ava, requested, test_ids, seed, strata, checker, skipped)
        used, scaled = fit_sizes(requested, chosen, test_list, ava_root / AVA_LABELS, len(ava))
        if scaled is not None:
            # Second pass at the scaled sizes; decoded images are not decoded again. The first pass saw every
            # bad image of an exhausted pool, so its problems are kept, and the second pass's added.
            again = list(audited)
            chosen = select_ava(ava, used, test_ids, seed, strata, checker, again)
            reported = {(p["source"], p["image_id"], p["line"]) for p in skipped}
            skipped += [p for p in again if (p["source"], p["image_id"], p["line"]) not in reported]
            print(f"data: {ava_root / AVA_LABELS}: subset sizes scaled: {scaled['reason']}", file=sys.stderr)
        for split in AVA_SPLITS:
            rows_by_split[split] = [it.row(split) for it in chosen[split]]
        unseen = pick_valid(aadb, sizes["unseen"], np.random.default_rng([seed, 3]), strata, checker, skipped)
        if aadb_root is not None and sizes["unseen"] > 0 and not unseen:
            raise UserError(
                f"{aadb_root / AADB_LABEL_DIR}: no valid AADB image in list(s) {', '.join(aadb_lists)} "
                f"({len(aadb)} listed): the unseen split would be empty"
            )
        rows_by_split["unseen"] = [it.row("unseen") for it in unseen]
        validate = {"images": checker.count, "seconds": round(checker.seconds, 3), "workers": checker.workers}

    problems += skipped
    extra = {
        "dataset": "ava" + ("+aadb" if aadb_root is not None else ""),
        "roots": {"ava": str(ava_root), "aadb": str(aadb_root) if aadb_root is not None else None},
        "parsed": parsed,
        "aadb_lists": aadb_lists if aadb_root is not None else [],
        "aadb_mos_mapping": AADB_MAPPING,
        "ava_test_list": test_list_s or None,
        "subset_sizes": sizes,  # as requested; scaled_subsets (null when none) gives the sizes used
        "scaled_subsets": scaled,
        "subset_strata": strata,
        "shortfall": {s: sizes[s] - len(rows_by_split[s]) for s in sizes if len(rows_by_split[s]) < sizes[s]},
        "skipped_total": len(problems),
        "skipped_by_kind": dict(sorted(Counter(p["kind"] for p in problems).items())),
        "skipped": problems[:MAX_LISTED],
        "throughput": {
            "parse_s": round(parse_s, 3),
            "lines_per_s": round(sum(parsed.values()) / parse_s, 1) if parse_s else None,
            "validated_images": validate["images"],
            "validate_s": validate["seconds"],
            "images_per_s": round(validate["images"] / validate["seconds"], 1) if validate["seconds"] else None,
            "workers": validate["workers"],
        },
    }
    if aadb_root is None:
        extra["notes"] = ["data.aadb_root not set: the unseen split is empty"]
    assignment = {"train": ["ava"], "val": ["ava"], "test": ["ava"], "unseen": ["aadb"] if aadb_root else []}
    return finish_splits(params, out_dir, rows_by_split, assignment, extra_stats=extra, fields=PAPER_FIELDS)
