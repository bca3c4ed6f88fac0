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

import re
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from aesthetic_llm.data.download import fetch_root, find_marker
from aesthetic_llm.errors import UserError
from aesthetic_llm.params import Params
from aesthetic_llm.data.prepare import finish_splits

AVA_LABELS = "AVA.txt"
AADB_LABEL_DIR = "imgListFiles_label"
AADB_LISTS = ("Train", "Validation", "Test", "TestNew")
AADB_IMAGE_DIRS = ("datasetImages_originalSize", "datasetImages_warp256", "AADB_newtest")
AADB_MAPPING = "mos = 1 + 9 * score"
PAPER_FIELDS = ["image_id", "path", "mos", "split", "votes", "vote_std", "source", "line"]
DEFAULT_SIZES = {"train": 1500, "val": 300, "test": 1000, "unseen": 1000}
MAX_LISTED = 1000  # problems listed one by one in stats.json; all are counted
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


# -- seeded, MOS-stratified subsets ----------------------------------------------------------------
def allocate(n: int, sizes: Sequence[int]) -> list[int]:
    """Split n over strata in proportion to their sizes (largest remainder; ties to the lower stratum)."""
    total = sum(sizes)
    if n >= total:
        return list(sizes)
    raw = [n * s / total for s in sizes]
    quota = [int(r) for r in raw]
    for i in sorted(range(len(sizes)), key=lambda i: (-(raw[i] - quota[i]), i))[: n - sum(quota)]:
        quota[i] += 1
    return quota


def scale_sizes(requested: dict[str, int], available: int) -> dict[str, int]:
    """The requested subset sizes scaled down to `available` images: in proportion (largest remainder, ties to
    the earlier split), each split asked for at least one image keeps one, the total is `available`. Unchanged
    when they fit. ValueError when there are fewer images than splits asked for."""
    if sum(requested.values()) <= available:
        return dict(requested)
    names = [s for s, n in requested.items() if n > 0]
    if available < len(names):
        raise ValueError(f"{available} image(s) for {len(names)} split(s)")
    quota = dict(zip(names, allocate(available, [requested[s] for s in names]), strict=True))
    for s in names:
        if quota[s] == 0:  # the largest split gives one (it has >= 2: available >= len(names))
            donor = max(names, key=lambda t: (quota[t], -names.index(t)))
            quota[donor] -= 1
            quota[s] = 1
    return {s: quota.get(s, 0) for s in requested}


def stratum(mos: float, strata: int) -> int:
    return min(strata - 1, max(0, int((mos - 1.0) / 9.0 * strata)))


def pick_valid(
    items: Sequence[Item],
    n: int,
    rng: np.random.Generator,
    strata: int,
    checker: ImageChecker,
    skipped: list[dict[str, Any]],
) -> list[Item]:
    """A MOS-stratified random subset of n images that decode; bad ones go to `skipped` and are replaced."""
    groups: dict[int, list[Item]] = {}
    for it in sorted(items, key=lambda it: (it.source, it.image_id)):  # input order never matters
        groups.setdefault(stratum(it.mos, strata), []).append(it)
    keys = sorted(groups)
    for k in keys:
        groups[k] = [groups[k][i] for i in rng.permutation(len(groups[k]))]
    quota = dict(zip(keys, allocate(n, [len(groups[k]) for k in keys]), strict=True))
    picked: dict[int, list[Item]] = {k: [] for k in keys}
    next_idx = dict.fromkeys(keys, 0)
    while True:
        batch = []
        for k in keys:
            need = quota[k] - len(picked[k])
            batch += [(k, it) for it in groups[k][next_idx[k] : next_idx[k] + need]]
            next_idx[k] += need
        if not batch:
            # A stratum ran out of good images: top up from the strata that still have candidates.
            short = n - sum(len(v) for v in picked.values())
            left = [len(groups[k]) - next_idx[k] for k in keys]
            if short <= 0 or not any(left):
                break
            for k, extra in zip(keys, allocate(short, left), strict=True):
                quota[k] += extra
            continue
        for (k, it), reason in zip(batch, checker.check([it.path for _, it in batch]), strict=True):
            if reason is None:
                picked[k].append(it)
            else:
                kind, _, detail = reason.partition(": ")
                skipped.append(problem(it.source, it.path, it.line, kind, detail, it.image_id))
    return sorted((it for k in keys for it in picked[k]), key=lambda it: it.image_id)


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


AVA_SPLITS = ("test", "val", "train")  # the order they are drawn in


def select_ava(
    ava: Sequence[Item],
    sizes: dict[str, int],
    test_ids: set[str] | None,
    seed: int,
    strata: int,
    checker: ImageChecker,
    skipped: list[dict[str, Any]],
) -> dict[str, list[Item]]:
    """Test first, then val, then train, each from what is left: one generator per split, so resizing train
    never changes test. Official test-list images never reach train/val."""
    taken: set[str] = set()
    chosen: dict[str, list[Item]] = {}
    for split_idx, split in enumerate(AVA_SPLITS):
        excluded = taken | {p["image_id"] for p in skipped}
        pool = [
            it
            for it in ava
            if it.image_id not in excluded and (test_ids is None or (it.image_id in test_ids) == (split == "test"))
        ]
        rng = np.random.default_rng([seed, split_idx])
        chosen[split] = pick_valid(pool, sizes[split], rng, strata, checker, skipped)
        taken |= {it.image_id for it in chosen[split]}
    return chosen


def _fmt(sizes: dict[str, int]) -> str:
    return " ".join(f"{s}={n}" for s, n in sizes.items())


def fit_sizes(
    requested: dict[str, int],
    chosen: dict[str, list[Item]],
    test_list: Path | None,
    labels: Path,
    parsed: int,
) -> tuple[dict[str, int], dict[str, Any] | None]:
    """Sizes for a second pass when a first pass ran short, and the stats record of it (None: nothing to change).

    A split comes out short only when its pool is exhausted, so every valid image of that pool is then known:
    the splits drawing from it are scaled to exactly that many. With the official test list, test is its own
    pool (it keeps what the list has) and val/train share the rest."""
    groups = [("test",), ("val", "train")] if test_list is not None else [AVA_SPLITS]
    used, available, parts = dict(requested), {}, []
    for group in groups:
        req = {s: requested[s] for s in group}
        if all(len(chosen[s]) >= req[s] for s in group):
            continue
        have = sum(len(chosen[s]) for s in group)
        where = "+".join(group) + (" (official test list)" if test_list is not None and group == ("test",) else "")
        available[where] = have
        try:
            fitted = scale_sizes(req, have)
        except ValueError:
            if test_list is not None and group == ("test",):
                raise UserError(
                    f"{test_list}: no valid AVA image of {labels} is on the official test list "
                    f"(test={req['test']} requested; {parsed} images listed in {labels.name}): the test split would be empty"
                ) from None
            outside = " outside the official test list" if test_list is not None else ""
            raise UserError(
                f"{labels}: only {have} valid AVA image(s){outside} for {sum(n > 0 for n in req.values())} splits "
                f"({_fmt(req)} requested; {parsed} images listed): each split needs at least one"
            ) from None
        used.update(fitted)
        parts.append(f"{have} valid images for {where} ({_fmt(req)} requested), using {_fmt(fitted)}")
    if used == requested:
        return used, None
    reason = "fewer valid images than requested: " + "; ".join(parts)
    return used, {"requested": dict(requested), "used": used, "available": available, "reason": reason}


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
