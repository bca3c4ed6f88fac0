#!/usr/bin/env python
"""DVC stage `dpo_data`: preference pairs from the scores (default: near-level hard pairs)."""

import argparse
from collections import Counter
from pathlib import Path

from aesthetic_llm.errors import cli_entry
from aesthetic_llm.io_utils import write_json
from aesthetic_llm.lf_data import load_annotations, near_level_pairs, write_dpo_dataset
from aesthetic_llm.params import Params


@cli_entry
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", default="data/llamafactory/dpo")
    args = ap.parse_args()
    p = Params.load(args.params)
    p.str("dpo.pair_strategy", choices=("near_level",))
    offsets = [int(o) for o in p.list("dpo.level_offsets")]
    pairs = near_level_pairs(
        load_annotations(Path(p.str("annotate.out_dir")) / "train.jsonl"),
        p.int("levels.num_levels", lo=2),
        offsets,
        p.int("dpo.pairs_per_image", lo=1),
        p.int("seed"),
    )
    write_dpo_dataset(Path(args.out), pairs)
    gaps = Counter(r["level_gap"] for r in pairs)
    write_json(Path(args.out) / "pair_stats.json", {"pairs": len(pairs), "level_gaps": dict(sorted(gaps.items()))})
    print(f"dpo: {len(pairs)} pairs, level gaps {dict(sorted(gaps.items()))} -> {args.out}")


if __name__ == "__main__":
    main()
