"""LLaMA-Factory datasets (sharegpt, multimodal) and their dataset_info.json, for SFT and DPO."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .critic import ImageProperties, write_critique
from .errors import UserError
from .io_utils import read_jsonl, write_json
from .prompts import RATING_PREFIX, score_instruction

SFT_DATASET, SFT_VAL_DATASET, DPO_DATASET = "aesthetic_sft", "aesthetic_sft_val", "aesthetic_dpo"
# The no-CoT ablation (Q-Align-style training): the same images, answered with the level alone.
PLAIN_DATASET, PLAIN_VAL_DATASET = "aesthetic_plain", "aesthetic_plain_val"
_TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}


def user_turn(num_levels: int) -> dict[str, str]:
    return {"role": "user", "content": "<image>" + score_instruction(num_levels)}


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
