#!/usr/bin/env python
"""DVC stage `dpo_data@<seed>`: preference pairs (dpo.pair_strategy) and their statistics (pair_stats.json).

near_level (the study's hard pairs) | far_level (wrong level >= dpo.far_min_gap away) | on_policy (k answers
sampled from the SFT model: closest written level vs farthest) | gold_vs_policy (the gold critique vs the
farthest of those samples: self-play, SPIN) | cross_image (the image's own critique vs the critique of
another image with close MOS, on the same single-image prompt).
"""

from collections import Counter
from pathlib import Path

from aesthetic_llm.errors import UserError, cli_entry
from aesthetic_llm.io_utils import write_json, write_jsonl
from aesthetic_llm.params import Params, stage_args
from aesthetic_llm.paths import seed_dir
from aesthetic_llm.train.datasets import (
    PAIR_STRATEGIES,
    cross_image_pairs,
    far_level_pairs,
    gold_vs_policy_pairs,
    load_annotations,
    near_level_pairs,
    on_policy_pairs,
    pair_stats,
    split_for_dpo_from_params,
    write_dpo_dataset,
)


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
        pair_fn = on_policy_pairs if strategy == "on_policy" else gold_vs_policy_pairs
        pairs = pair_fn(annotations, samples, num_levels, dropped)
    return pairs, dropped


@cli_entry
def main() -> None:
    p, args = stage_args(__doc__, seeded=True)
    strategy = p.str("dpo.pair_strategy", choices=PAIR_STRATEGIES)
    out = seed_dir(p.str("dpo.data_dir"), args.seed)
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("on_policy_samples.jsonl",):
        (out / stale).unlink(missing_ok=True)
    train = load_annotations(Path(p.str("annotate.out_dir")) / "train.jsonl")
    # dpo.sft_holdout > 0: pairs only from the source photos SFT never saw (the same seeded choice as sft_data).
    _, annotations, held = split_for_dpo_from_params(p, train)
    pairs, dropped = build_pairs(p, strategy, annotations, out, args.seed)
    stats = pair_stats(strategy, annotations, pairs, dropped)
    stats["sft_holdout_sources"] = held
    write_json(out / "pair_stats.json", stats)
    if not pairs:
        raise UserError(
            f"dpo: pair_strategy {strategy}: no preference pairs could be built (dropped: {stats['dropped']})"
        )
    write_dpo_dataset(out, pairs)
    print(
        f"dpo ({strategy}): {len(pairs)} pairs, level gaps {stats['level_gaps']}, dropped {stats['dropped']} -> {out}"
    )


if __name__ == "__main__":
    main()
