#!/usr/bin/env python
"""DVC stage `dpo_data@<seed>`: preference pairs (dpo.pair_strategy) and their statistics (pair_stats.json).

near_level (the study's hard pairs) | far_level (wrong level >= dpo.far_min_gap away) | on_policy (k answers
sampled from the SFT model: closest written level vs farthest) | gold_vs_policy (the gold critique vs the
farthest of those samples: self-play, SPIN) | cross_image (the image's own critique vs the critique of
another image with close MOS, on the same single-image prompt).
"""

from pathlib import Path

from aesthetic_llm.errors import UserError, cli_entry
from aesthetic_llm.io_utils import write_json
from aesthetic_llm.params import stage_args
from aesthetic_llm.paths import seed_dir
from aesthetic_llm.train.datasets import (
    PAIR_STRATEGIES,
    load_annotations,
    pair_stats,
    split_for_dpo_from_params,
    write_dpo_dataset,
)
from aesthetic_llm.train.pairs import build_pairs
from aesthetic_llm.train.settings import PairSettings


@cli_entry
def main() -> None:
    p, args = stage_args(__doc__, seeded=True)
    settings = PairSettings.from_params(p, PAIR_STRATEGIES)
    strategy = settings.strategy
    out = seed_dir(p.str("dpo.data_dir"), args.seed)
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("on_policy_samples.jsonl",):
        (out / stale).unlink(missing_ok=True)
    train = load_annotations(Path(p.str("annotate.out_dir")) / "train.jsonl")
    # dpo.sft_holdout > 0: pairs only from the source photos SFT never saw (the same seeded choice as sft_data).
    _, annotations, held = split_for_dpo_from_params(p, train)
    sft_model = seed_dir(p.str("sft.output_dir"), args.seed)
    pairs, dropped = build_pairs(settings, annotations, sft_model, out, args.seed)
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
