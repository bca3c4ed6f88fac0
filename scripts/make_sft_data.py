#!/usr/bin/env python
"""DVC stage `sft_data`: LLaMA-Factory sharegpt datasets (CoT and plain-answer, + val) and dataset_info.json."""

from pathlib import Path

from aesthetic_llm.errors import cli_entry
from aesthetic_llm.params import stage_args
from aesthetic_llm.train.datasets import (
    PLAIN_DATASET,
    PLAIN_VAL_DATASET,
    SFT_DATASET,
    SFT_VAL_DATASET,
    load_annotations,
    plain_records,
    sft_records,
    split_for_dpo_from_params,
    write_sft_dataset,
)


@cli_entry
def main() -> None:
    p, args = stage_args(__doc__, out="data/llamafactory/sft")
    n = p.int("levels.num_levels", lo=2)
    ann = Path(p.str("annotate.out_dir"))
    train = load_annotations(ann / "train.jsonl")
    # dpo.sft_holdout > 0: those source photos go to DPO only; the no-CoT baseline still sees every label.
    sft_train, _, held = split_for_dpo_from_params(p, train)
    val_path = ann / "val.jsonl"
    val = load_annotations(val_path) if val_path.exists() else []
    write_sft_dataset(
        Path(args.out),
        {
            SFT_DATASET: sft_records(sft_train, n),
            SFT_VAL_DATASET: sft_records(val, n),
            PLAIN_DATASET: plain_records(train, n),
            PLAIN_VAL_DATASET: plain_records(val, n),
        },
    )
    held_note = (
        f" ({len(train) - len(sft_train)} images of the DPO-only sources {', '.join(held)} left out)" if held else ""
    )
    print(f"sft: {len(sft_train)} CoT / {len(train)} plain train, {len(val)} val records{held_note} -> {args.out}")


if __name__ == "__main__":
    main()
