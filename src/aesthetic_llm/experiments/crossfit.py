"""Cross-fitted answers for DPO pairs: every train photo answered by an SFT model that never saw it.

The train source photos (lf_data.source_group; single images on AVA) go into k seeded folds. Fold model j
is the SFT recipe trained on the other folds, and it samples answers on fold j only. The pairs
(on_policy or gold_vs_policy) then cover every train photo with the errors an SFT model makes on new
photos — on its own training photos it is near-perfect — while DPO still starts from the full SFT model.
The price is k extra SFT runs; `scripts/crossfit_dpo.py` runs it beside the pipeline for one training seed.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any

from aesthetic_llm.errors import UserError
from aesthetic_llm.experiments.side_runs import score_and_evaluate
from aesthetic_llm.io_utils import read_json, read_jsonl, sha256_file, write_json, write_jsonl
from aesthetic_llm.params import Params
from aesthetic_llm.paths import seed_dir
from aesthetic_llm.train.datasets import (
    SFT_DATASET,
    SFT_VAL_DATASET,
    load_annotations,
    pair_stats,
    sft_records,
    source_group,
    write_dpo_dataset,
    write_sft_dataset,
)
from aesthetic_llm.train.pairs import SAMPLED_PAIRS
from aesthetic_llm.train.settings import OnPolicySettings, TrainSettings, stage_settings
from aesthetic_llm.train.stage import train_stage

Samples = dict[str, list[tuple[str, int | None]]]


def source_folds(annotations: list[dict[str, Any]], k: int, seed: int) -> list[list[str]]:
    """k disjoint, seeded folds of the train source groups, sizes differing by at most one."""
    groups = sorted({source_group(a["image_id"]) for a in annotations})
    if not 2 <= k <= len(groups):
        raise UserError(f"crossfit: --folds {k}: need 2 <= folds <= {len(groups)} (the train source photos)")
    random.Random(seed).shuffle(groups)
    return [sorted(groups[i::k]) for i in range(k)]


def _read_samples(path: Path) -> Samples:
    return {r["image_id"]: [(a["text"], a["level"]) for a in r["answers"]] for r in read_jsonl(path)}


def crossfit_samples(
    p: Params,
    train: list[dict[str, Any]],
    val: list[dict[str, Any]],
    folds: list[list[str]],
    work_dir: Path,
    op: OnPolicySettings,
    seed: int,
) -> Samples:
    """Train fold model j on the other folds (final checkpoint: it only answers) and sample on fold j.

    Resumable: a fold whose `fold.json` records the same photos and recipe (base weights, SFT params,
    sampling) is reused.
    """
    from aesthetic_llm.train.on_policy import sample_answers

    n = p.int("levels.num_levels", lo=2)
    base = p.str("model.name_or_path")
    weights = Path(base) / "model.safetensors"  # a hub id (paper profile) is keyed by its name
    recipe = {
        "base": base,
        "base_sha256": sha256_file(weights) if weights.exists() else None,
        "sft": p.get("sft"),
        "samples_per_image": op.samples,
        "temperature": op.temperature,
        "max_new_tokens": op.max_new_tokens,
        "seed": seed,
    }
    samples: Samples = {}
    for j, fold in enumerate(folds):
        fold_dir = work_dir / f"fold{j}"
        record = {"photos": fold, **recipe}
        done, answers = fold_dir / "fold.json", fold_dir / "samples.jsonl"
        if done.exists() and answers.exists() and read_json(done) == record:
            print(f"crossfit fold {j}: reusing {answers}", flush=True)
            samples.update(_read_samples(answers))
            continue
        keep = set(fold)
        others = [a for a in train if source_group(a["image_id"]) not in keep]
        held = [a for a in train if source_group(a["image_id"]) in keep]
        data_dir = fold_dir / "data"
        write_sft_dataset(data_dir, {SFT_DATASET: sft_records(others, n), SFT_VAL_DATASET: sft_records(val, n)})
        model_dir = fold_dir / "model"
        name = f"crossfit_fold{j}"
        # the SFT recipe into the fold's own dir, final checkpoint (no val selection: the model only answers)
        train_stage(
            TrainSettings.from_params(p, "sft"),
            base,
            seed=seed,
            out_dir=model_dir,
            reports_dir=fold_dir / "reports",
            name=name,
            dataset={"dataset_dir": str(data_dir)},
        )
        got = sample_answers(
            model_dir,
            held,
            n,
            k=op.samples,
            temperature=op.temperature,
            max_new_tokens=op.max_new_tokens,
            batch_size=op.batch_size,
            seed=seed,
        )
        write_jsonl(
            answers, [{"image_id": i, "answers": [{"text": t, "level": lv} for t, lv in s]} for i, s in got.items()]
        )
        write_json(done, record)
        print(
            f"crossfit fold {j} ({', '.join(fold)}): {len(held)} images answered by a model trained on the rest",
            flush=True,
        )
        samples.update(got)
    return samples


def run_crossfit(
    p: Params, k: int, fold_seed_arg: int | None, pair_strategy: str, seed: int, out_dir: Path, work: Path
) -> dict[str, Any]:
    """k fold SFT models answer the photos they never saw; DPO on those pairs from the pipeline's SFT model;
    scored and evaluated against the pipeline's models. Returns the evaluate stage's metrics."""
    ann = Path(p.str("annotate.out_dir"))
    train = load_annotations(ann / "train.jsonl")
    val = load_annotations(ann / "val.jsonl") if (ann / "val.jsonl").exists() else []
    fold_seed = p.int("seed") if fold_seed_arg is None else fold_seed_arg
    folds = source_folds(train, k, fold_seed)
    n = p.int("levels.num_levels", lo=2)
    samples = crossfit_samples(p, train, val, folds, work, OnPolicySettings.from_params(p), seed)

    dropped: Counter = Counter()
    pairs = SAMPLED_PAIRS[pair_strategy](train, samples, n, dropped)
    stats = pair_stats(f"{pair_strategy} (cross-fitted)", train, pairs, dropped)
    stats.update(crossfit_folds=folds, fold_seed=fold_seed)
    write_json(out_dir / "pair_stats.json", stats)
    if not pairs:
        raise UserError(f"crossfit: no preference pairs could be built (dropped: {stats['dropped']})")
    write_dpo_dataset(work / "dpo_data", pairs)
    settings, selection = stage_settings(p, "dpo")
    train_stage(
        settings,
        seed_dir(p.str("sft.output_dir"), seed),
        seed=seed,
        out_dir=seed_dir(p.str("dpo.output_dir"), seed),
        reports_dir=out_dir / "train",
        dataset={"dataset_dir": str(work / "dpo_data")},
        selection=selection,
    )

    metrics = score_and_evaluate(p, out_dir, seeds=[seed])
    return metrics
