"""Seeded, MOS-stratified subsets of valid images: split quotas, per-split draws, scaling when images run short."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aesthetic_llm.data.ava_labels import ImageChecker, Item, problem
from aesthetic_llm.errors import UserError


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
