"""Preference pairs for DPO by dpo.pair_strategy, with the counts of images each strategy had to drop."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from aesthetic_llm.io_utils import write_jsonl
from aesthetic_llm.params import Params
from aesthetic_llm.paths import seed_dir
from aesthetic_llm.train.datasets import (
    cross_image_pairs,
    far_level_pairs,
    gold_vs_policy_pairs,
    near_level_pairs,
    on_policy_pairs,
)

# Strategies that pair answers sampled from an SFT model (the pipeline's, or cross-fitted fold models).
SAMPLED_PAIRS = {"on_policy": on_policy_pairs, "gold_vs_policy": gold_vs_policy_pairs}


def build_pairs(p: Params, strategy: str, annotations: list[dict], out: Path, seed: int) -> tuple[list[dict], Counter]:
    num_levels = p.int("levels.num_levels", lo=2)
    per_image = p.int("dpo.pairs_per_image", lo=1)
    dropped: Counter = Counter()
    if strategy == "near_level":
        offsets = [int(o) for o in p.list("dpo.level_offsets")]
        pairs = near_level_pairs(annotations, num_levels, offsets, per_image, seed)
        dropped["no_level_at_offsets"] = len(annotations) - len({r["image_id"] for r in pairs})
    elif strategy == "far_level":
        min_gap = p.int("dpo.far_min_gap", 4, lo=1)
        pairs = far_level_pairs(annotations, num_levels, min_gap, per_image, seed, dropped)
    elif strategy == "cross_image":
        max_gap = p.num("dpo.cross_max_mos_gap", 0.5, lo=0.0)
        pairs = cross_image_pairs(annotations, num_levels, max_gap, per_image, seed, dropped)
    else:
        from aesthetic_llm.train.on_policy import sample_answers

        samples = sample_answers(
            seed_dir(p.str("sft.output_dir"), seed),
            annotations,
            num_levels,
            k=p.int("dpo.on_policy_samples", 4, lo=2),
            temperature=p.num("dpo.on_policy_temperature", 1.0, lo=1e-6),
            max_new_tokens=p.int("dpo.on_policy_max_new_tokens", lo=1),
            batch_size=p.int("score.batch_size", lo=1),
            seed=seed,
        )
        write_jsonl(
            out / "on_policy_samples.jsonl",
            [{"image_id": i, "answers": [{"text": t, "level": lv} for t, lv in s]} for i, s in samples.items()],
        )
        pairs = SAMPLED_PAIRS[strategy](annotations, samples, num_levels, dropped)
    return pairs, dropped
