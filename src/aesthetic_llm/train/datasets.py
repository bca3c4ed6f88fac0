"""LLaMA-Factory datasets (sharegpt, multimodal) and their dataset_info.json, for SFT and DPO."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from aesthetic_llm.critic import write_critique
from aesthetic_llm.data.manifest import source_group
from aesthetic_llm.errors import UserError
from aesthetic_llm.io_utils import read_jsonl, write_json
from aesthetic_llm.measure import ImageProperties
from aesthetic_llm.params import Params
from aesthetic_llm.prompts import RATING_PREFIX, score_instruction

SFT_DATASET, SFT_VAL_DATASET, DPO_DATASET = "aesthetic_sft", "aesthetic_sft_val", "aesthetic_dpo"
# The no-CoT ablation (Q-Align-style training): the same images, answered with the level alone.
PLAIN_DATASET, PLAIN_VAL_DATASET = "aesthetic_plain", "aesthetic_plain_val"
_TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}


def user_turn(num_levels: int) -> dict[str, str]:
    return {"role": "user", "content": "<image>" + score_instruction(num_levels)}


def split_for_dpo(
    annotations: list[dict[str, Any]], fraction: float, seed: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    """Keep a seeded share of the train source groups out of SFT: (SFT rows, DPO rows, DPO groups).

    DPO pairs then come from photos the SFT model has never fitted, where its answers still err the way
    they do on test photos (on its own training photos it is near-perfect and DPO has little to correct).
    fraction 0 keeps the classic recipe: SFT and DPO both use every train image.
    """
    if not 0.0 <= fraction < 1.0:
        raise UserError(f"dpo.sft_holdout: {fraction} is not in [0, 1)")
    if fraction == 0.0:
        return annotations, annotations, []
    groups = sorted({source_group(a["image_id"]) for a in annotations})
    n = min(max(1, round(fraction * len(groups))), len(groups) - 1)
    if n < 1:
        raise UserError(f"dpo.sft_holdout: {len(groups)} train source group(s) cannot be split between SFT and DPO")
    held = sorted(random.Random(seed).sample(groups, n))
    keep = set(held)
    sft = [a for a in annotations if source_group(a["image_id"]) not in keep]
    dpo = [a for a in annotations if source_group(a["image_id"]) in keep]
    return sft, dpo, held


def split_for_dpo_from_params(
    p: Params, annotations: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    """split_for_dpo with dpo.sft_holdout and dpo.sft_holdout_seed (null = seed): sft_data and dpo_data agree."""
    seed = p.get("dpo.sft_holdout_seed", None)
    seed = p.int("seed") if seed is None else p.int("dpo.sft_holdout_seed")
    return split_for_dpo(annotations, p.num("dpo.sft_holdout", 0.0), seed)


def sft_records(annotations: list[dict[str, Any]], num_levels: int) -> list[dict[str, Any]]:
    return [
        {
            "messages": [user_turn(num_levels), {"role": "assistant", "content": a["critique"]}],
            "images": [a["path"]],
            "image_id": a["image_id"],
        }
        for a in annotations
    ]


def plain_records(annotations: list[dict[str, Any]], num_levels: int) -> list[dict[str, Any]]:
    return [
        {
            "messages": [user_turn(num_levels), {"role": "assistant", "content": f"{RATING_PREFIX} {a['level']}"}],
            "images": [a["path"]],
            "image_id": a["image_id"],
        }
        for a in annotations
    ]


def near_level_pairs(
    annotations: list[dict[str, Any]], num_levels: int, offsets: list[int], per_image: int, seed: int
) -> list[dict[str, Any]]:
    """The study's hard pairs: chosen = the true critique; rejected = the same image's critique
    written for a nearby wrong level (|Δlevel| in offsets), so only the verdict and level differ."""
    rng = np.random.default_rng(seed)
    out = []
    for a in annotations:
        level = int(a["level"])
        wrong = [level + s * o for o in offsets for s in (-1, 1) if 1 <= level + s * o <= num_levels]
        if not wrong:
            continue
        props = ImageProperties(**a["properties"])
        for w in rng.choice(wrong, size=min(per_image, len(wrong)), replace=False):
            out.append(
                {
                    "messages": [user_turn(num_levels)],
                    "chosen": {"role": "assistant", "content": a["critique"]},
                    "rejected": {"role": "assistant", "content": write_critique(props, int(w), num_levels)},
                    "images": [a["path"]],
                    "image_id": a["image_id"],
                    "level_gap": int(abs(int(w) - level)),
                }
            )
    return out


PAIR_STRATEGIES = ("near_level", "far_level", "on_policy", "gold_vs_policy", "cross_image")


def _pair(a: dict[str, Any], num_levels: int, chosen: str, rejected: str, **extra: Any) -> dict[str, Any]:
    """One single-image preference record: the prompt shows image `a`; both answers are candidate replies to it."""
    return {
        "messages": [user_turn(num_levels)],
        "chosen": {"role": "assistant", "content": chosen},
        "rejected": {"role": "assistant", "content": rejected},
        "images": [a["path"]],
        "image_id": a["image_id"],
        **extra,
    }


def far_level_pairs(
    annotations: list[dict[str, Any]],
    num_levels: int,
    min_gap: int,
    per_image: int,
    seed: int,
    dropped: Counter[str] | None = None,
) -> list[dict[str, Any]]:
    """Easy pairs: like near_level, but the rejected critique is written for a level >= min_gap from the truth."""
    rng = np.random.default_rng(seed)
    out = []
    for a in annotations:
        level = int(a["level"])
        wrong = [w for w in range(1, num_levels + 1) if abs(w - level) >= min_gap]
        if not wrong:
            if dropped is not None:
                dropped["no_level_far_enough"] += 1
            continue
        props = ImageProperties(**a["properties"])
        for w in rng.choice(wrong, size=min(per_image, len(wrong)), replace=False):
            rejected = write_critique(props, int(w), num_levels)
            out.append(_pair(a, num_levels, a["critique"], rejected, level_gap=int(abs(int(w) - level))))
    return out


def on_policy_pairs(
    annotations: list[dict[str, Any]],
    samples: dict[str, list[tuple[str, int | None]]],
    num_levels: int,
    dropped: Counter[str] | None = None,
) -> list[dict[str, Any]]:
    """Pairs from the SFT model's own sampled answers `samples[image_id] = [(text, written level or None), …]`:
    chosen = the answer whose level is closest to the truth, rejected = the farthest (first sampled wins a tie
    inside either set). Answers without a parseable level are dropped; an image whose closest and farthest
    answers are equally far from the truth (all tied) gives no pair."""
    dropped = dropped if dropped is not None else Counter()
    out = []
    for a in annotations:
        answers = samples.get(a["image_id"], [])
        parsed = [(t, lv) for t, lv in answers if lv is not None and 1 <= lv <= num_levels]
        dropped["unparseable_answers"] += len(answers) - len(parsed)
        if len(parsed) < 2:
            dropped["images_with_fewer_than_2_parseable"] += 1
            continue
        level = int(a["level"])
        errors = [abs(lv - level) for _, lv in parsed]
        best, worst = min(errors), max(errors)
        if best == worst:
            dropped["images_all_answers_tied"] += 1
            continue
        (c_text, c_lv), (r_text, r_lv) = parsed[errors.index(best)], parsed[errors.index(worst)]
        out.append(
            _pair(
                a,
                num_levels,
                c_text,
                r_text,
                level_gap=abs(r_lv - c_lv),
                chosen_error=best,
                rejected_error=worst,
                # signed: which way the policy errs, hence which way DPO will push the scale
                chosen_signed_error=c_lv - level,
                rejected_signed_error=r_lv - level,
            )
        )
    return out


def gold_vs_policy_pairs(
    annotations: list[dict[str, Any]],
    samples: dict[str, list[tuple[str, int | None]]],
    num_levels: int,
    dropped: Counter[str] | None = None,
) -> list[dict[str, Any]]:
    """Self-play pairs (SPIN, Chen et al. 2024): chosen = the image's gold critique (written for its true
    level), rejected = the SFT model's own sampled answer that is farthest from the truth — an answer without
    a parseable level counts as the farthest. Unlike on_policy, the chosen side (and the pref_ftx SFT term) is
    never a wrong sample; an image all of whose samples already write the true level gives no pair."""
    dropped = dropped if dropped is not None else Counter()
    out = []
    for a in annotations:
        answers = samples.get(a["image_id"], [])
        if not answers:
            dropped["no_samples"] += 1
            continue
        level = int(a["level"])
        errors = [num_levels if lv is None or not 1 <= lv <= num_levels else abs(lv - level) for _, lv in answers]
        worst = max(errors)
        if worst == 0:
            dropped["all_samples_right"] += 1
            continue
        r_text, r_lv = answers[errors.index(worst)]
        dropped["unparseable_rejected"] += r_lv is None
        signed = {} if r_lv is None or not 1 <= r_lv <= num_levels else {"rejected_signed_error": r_lv - level}
        out.append(
            _pair(a, num_levels, a["critique"], r_text, level_gap=worst, chosen_error=0, rejected_error=worst, **signed)
        )
    return out


def cross_image_pairs(
    annotations: list[dict[str, Any]],
    num_levels: int,
    max_mos_gap: float,
    per_image: int,
    seed: int,
    dropped: Counter[str] | None = None,
) -> list[dict[str, Any]]:
    """Grounding pairs. The prompt shows image A only (a valid single-image DPO record); chosen = A's own
    critique; rejected = the critique, verbatim, of another image B with close MOS (|ΔMOS| <= max_mos_gap,
    nearest first), so both answers have the same style and (nearly) the same level and differ mainly in
    whether the description fits the image shown. B's image never enters the record; partners whose
    critique text equals A's are skipped (the pair would be empty)."""
    dropped = dropped if dropped is not None else Counter()
    for i, a in enumerate(annotations, 1):
        if "mos" not in a:
            raise UserError(f"annotations:{i}: cross_image pairs need each image's 'mos'")
    rng = np.random.default_rng(seed)
    mos = np.array([float(a["mos"]) for a in annotations])
    out = []
    for i, a in enumerate(annotations):
        gap = np.abs(mos - mos[i])
        close = [j for j in rng.permutation(len(annotations)) if j != i and gap[j] <= max_mos_gap]
        close.sort(key=lambda j: gap[j])  # stable: random order among equal gaps
        partners = [j for j in close if annotations[j]["critique"] != a["critique"]][:per_image]
        if not partners:
            dropped["identical_critiques_only" if close else "no_partner_within_gap"] += 1
            continue
        for j in partners:
            b = annotations[j]
            out.append(
                _pair(
                    a,
                    num_levels,
                    a["critique"],
                    b["critique"],
                    level_gap=abs(int(b["level"]) - int(a["level"])),
                    mos_gap=float(gap[j]),
                    rejected_image_id=b["image_id"],
                )
            )
    return out


def pair_stats(
    strategy: str, annotations: list[dict[str, Any]], pairs: list[dict[str, Any]], dropped: Counter[str]
) -> dict[str, Any]:
    """Counts, level gaps and drop reasons of one pair set (data/llamafactory/dpo/pair_stats.json)."""
    gaps = Counter(int(r["level_gap"]) for r in pairs)
    with_pairs = len({r["image_id"] for r in pairs})
    stats: dict[str, Any] = {
        "strategy": strategy,
        "images": len(annotations),
        "pairs": len(pairs),
        "images_with_pairs": with_pairs,
        "images_without_pairs": len(annotations) - with_pairs,
        "level_gaps": {str(k): v for k, v in sorted(gaps.items())},
        "level_gap_mean": float(np.mean([r["level_gap"] for r in pairs])) if pairs else None,
        "same_level_pairs": gaps.get(0, 0),
        "dropped": dict(sorted(dropped.items())),
    }
    for key in ("mos_gap", "chosen_error", "rejected_error"):
        values = [r[key] for r in pairs if key in r]
        if values:
            stats[f"{key}_mean"] = float(np.mean(values))
            stats[f"{key}_max"] = float(np.max(values))
    signed = [r["rejected_signed_error"] for r in pairs if "rejected_signed_error" in r]
    if signed:  # DPO pushes away from the rejected answers: mostly too low ones move the scale up
        stats["rejected_signed_error_mean"] = float(np.mean(signed))
        stats["rejected_too_high_share"] = float(np.mean([x > 0 for x in signed]))
    return stats


def write_sft_dataset(out_dir: Path, datasets: dict[str, list[dict[str, Any]]]) -> None:
    """Write each named dataset (skipping empty ones) and one dataset_info.json describing them."""
    info = {}
    for name, rows in datasets.items():
        if not rows:
            continue
        write_json(out_dir / f"{name}.json", rows)
        info[name] = {
            "file_name": f"{name}.json",
            "formatting": "sharegpt",
            "columns": {"messages": "messages", "images": "images"},
            "tags": _TAGS,
        }
    write_json(out_dir / "dataset_info.json", info)


def write_dpo_dataset(out_dir: Path, pairs: list[dict[str, Any]]) -> None:
    if not pairs:
        raise UserError("dpo: no preference pairs could be built (check dpo.level_offsets and the annotations)")
    write_json(out_dir / f"{DPO_DATASET}.json", pairs)
    write_json(
        out_dir / "dataset_info.json",
        {
            DPO_DATASET: {
                "file_name": f"{DPO_DATASET}.json",
                "formatting": "sharegpt",
                "ranking": True,
                "columns": {"messages": "messages", "chosen": "chosen", "rejected": "rejected", "images": "images"},
                "tags": _TAGS,
            }
        },
    )


def load_annotations(path: Path) -> list[dict[str, Any]]:
    rows = read_jsonl(path)
    for i, r in enumerate(rows, 1):
        for key in ("image_id", "path", "level", "critique"):
            if key not in r:
                raise UserError(f"{path}:{i}: missing field {key!r}")
    return rows
