"""Preference pairs for DPO by dpo.pair_strategy, with the counts of images each strategy had to drop."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from aesthetic_llm.io_utils import write_jsonl
from aesthetic_llm.train.datasets import (
    cross_image_pairs,
    far_level_pairs,
    gold_vs_policy_pairs,
    near_level_pairs,
    on_policy_pairs,
)
from aesthetic_llm.train.settings import PairSettings

# Strategies that pair answers sampled from an SFT model (the pipeline's, or cross-fitted fold models).
SAMPLED_PAIRS = {"on_policy": on_policy_pairs, "gold_vs_policy": gold_vs_policy_pairs}


def build_pairs(
    settings: PairSettings, annotations: list[dict], sft_model: Path, out: Path, seed: int
) -> tuple[list[dict], Counter]:
    """The pairs of `settings.strategy` (sampled ones from answers of `sft_model`, kept in `out`), and the
    counts of images dropped by reason."""
    n, per_image = settings.num_levels, settings.per_image
    dropped: Counter = Counter()
    if settings.strategy == "near_level":
        pairs = near_level_pairs(annotations, n, list(settings.level_offsets), per_image, seed)
        dropped["no_level_at_offsets"] = len(annotations) - len({r["image_id"] for r in pairs})
    elif settings.strategy == "far_level":
        pairs = far_level_pairs(annotations, n, settings.far_min_gap, per_image, seed, dropped)
    elif settings.strategy == "cross_image":
        pairs = cross_image_pairs(annotations, n, settings.cross_max_mos_gap, per_image, seed, dropped)
    else:
        from aesthetic_llm.train.on_policy import sample_answers

        op = settings.on_policy
        samples = sample_answers(
            sft_model,
            annotations,
            n,
            k=op.samples,
            temperature=op.temperature,
            max_new_tokens=op.max_new_tokens,
            batch_size=op.batch_size,
            seed=seed,
        )
        write_jsonl(
            out / "on_policy_samples.jsonl",
            [{"image_id": i, "answers": [{"text": t, "level": lv} for t, lv in s]} for i, s in samples.items()],
        )
        pairs = SAMPLED_PAIRS[settings.strategy](annotations, samples, n, dropped)
    return pairs, dropped
