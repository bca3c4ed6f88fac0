#!/usr/bin/env python
"""DVC stage `sft_data`: LLaMA-Factory sharegpt SFT dataset (+ val) and dataset_info.json."""

import argparse
from pathlib import Path

from aesthetic_llm.errors import cli_entry
from aesthetic_llm.lf_data import load_annotations, sft_records, write_sft_dataset
from aesthetic_llm.params import Params


@cli_entry
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", default="data/llamafactory/sft")
    args = ap.parse_args()
    p = Params.load(args.params)
    n = p.int("levels.num_levels", lo=2)
    ann = Path(p.str("annotate.out_dir"))
    train = sft_records(load_annotations(ann / "train.jsonl"), n)
    val_path = ann / "val.jsonl"
    val = sft_records(load_annotations(val_path), n) if val_path.exists() else []
    write_sft_dataset(Path(args.out), train, val)
    print(f"sft: {len(train)} train, {len(val)} val records -> {args.out}")


if __name__ == "__main__":
    main()
