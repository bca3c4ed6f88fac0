#!/usr/bin/env python
"""DPO on cross-fitted pairs (aesthetic_llm.experiments.crossfit), beside the pipeline, scored against its models.

    python scripts/crossfit_dpo.py --folds 2 --pairs on_policy --out-dir reports/crossfit/k2_on_policy

Needs the pipeline's outputs (`dvc repro` or `dvc pull`): annotations, manifests and the trained models.
Trains k fold SFT models and one DPO model (from the pipeline's SFT model) under --work-dir (default
runs/crossfit/<out-dir name>, not tracked; finished folds are reused on a rerun). Writes into --out-dir
what produced the numbers and the numbers: params.yaml (params.yaml with the --set values and this
run's paths), pair_stats.json (with the folds), train/ (the DPO config, log and checkpoint choice),
predictions.csv and metrics.json (the evaluate stage's format: DPO − SFT with paired bootstrap CIs).
"""

import argparse
import json
from collections import Counter
from pathlib import Path

from aesthetic_llm.errors import UserError, cli_entry
from aesthetic_llm.experiments.crossfit import crossfit_samples, source_folds
from aesthetic_llm.experiments.side_runs import params_with_sets, score_and_evaluate
from aesthetic_llm.io_utils import write_json
from aesthetic_llm.params import pin_numerics, training_seeds
from aesthetic_llm.paths import seed_dir
from aesthetic_llm.train.datasets import (
    gold_vs_policy_pairs,
    load_annotations,
    on_policy_pairs,
    pair_stats,
    write_dpo_dataset,
)
from aesthetic_llm.train.stage import train_stage

PAIRS = {"on_policy": on_policy_pairs, "gold_vs_policy": gold_vs_policy_pairs}


@cli_entry
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--folds", type=int, default=2, help="k: fold models, each trained on the other k-1 folds")
    ap.add_argument("--fold-seed", type=int, default=None, help="which photos go together (default: seed)")
    ap.add_argument("--pairs", choices=sorted(PAIRS), default="on_policy")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any param (repeatable)")
    ap.add_argument("--seed", type=int, default=None, help="training seed (default: the first of `seeds`)")
    ap.add_argument("--out-dir", type=Path, required=True)
    ap.add_argument("--work-dir", type=Path, default=None)
    args = ap.parse_args()
    work = args.work_dir or Path("runs/crossfit") / args.out_dir.name
    own = [
        f"dpo.output_dir={work / 'dpo'}",
        f"dpo.pair_strategy={args.pairs}",
        f"score.out_dir={args.out_dir / 'predictions'}",
    ]
    p = params_with_sets(args.params, args.set + own, args.out_dir)
    pin_numerics(p)
    seed = training_seeds(p)[0] if args.seed is None else args.seed

    ann = Path(p.str("annotate.out_dir"))
    train = load_annotations(ann / "train.jsonl")
    val = load_annotations(ann / "val.jsonl") if (ann / "val.jsonl").exists() else []
    fold_seed = p.int("seed") if args.fold_seed is None else args.fold_seed
    folds = source_folds(train, args.folds, fold_seed)
    n = p.int("levels.num_levels", lo=2)
    samples = crossfit_samples(p, train, val, folds, work, p.int("dpo.on_policy_samples", lo=2), seed)

    dropped: Counter = Counter()
    pairs = PAIRS[args.pairs](train, samples, n, dropped)
    stats = pair_stats(f"{args.pairs} (cross-fitted)", train, pairs, dropped)
    stats.update(crossfit_folds=folds, fold_seed=fold_seed)
    write_json(args.out_dir / "pair_stats.json", stats)
    if not pairs:
        raise UserError(f"crossfit: no preference pairs could be built (dropped: {stats['dropped']})")
    write_dpo_dataset(work / "dpo_data", pairs)
    train_stage(
        p,
        "dpo",
        seed_dir(p.str("sft.output_dir"), seed),
        seed=seed,
        out_dir=seed_dir(p.str("dpo.output_dir"), seed),
        reports_dir=args.out_dir / "train",
        dataset={"dataset_dir": str(work / "dpo_data")},
    )

    metrics = score_and_evaluate(p, args.out_dir, seeds=[seed])
    for split, m in metrics["models"]["dpo"].items():
        keys = (
            "srcc",
            "srcc_diff_vs_sft",
            "srcc_diff_vs_sft_ci",
            "pair_acc",
            "pair_acc_diff_vs_sft",
            "pair_acc_diff_vs_sft_ci",
        )
        print(f"dpo {split}:", json.dumps({k: m[k] for k in keys if k in m}))


if __name__ == "__main__":
    main()
