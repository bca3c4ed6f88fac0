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
from pathlib import Path

from aesthetic_llm.errors import cli_entry
from aesthetic_llm.experiments.crossfit import run_crossfit
from aesthetic_llm.experiments.side_runs import params_with_sets
from aesthetic_llm.params import pin_numerics, training_seeds
from aesthetic_llm.train.pairs import SAMPLED_PAIRS


@cli_entry
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--folds", type=int, default=2, help="k: fold models, each trained on the other k-1 folds")
    ap.add_argument("--fold-seed", type=int, default=None, help="which photos go together (default: seed)")
    ap.add_argument("--pairs", choices=sorted(SAMPLED_PAIRS), default="on_policy")
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

    metrics = run_crossfit(p, args.folds, args.fold_seed, args.pairs, seed, args.out_dir, work)
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
