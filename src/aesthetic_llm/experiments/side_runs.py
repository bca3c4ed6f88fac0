"""What the scripts that run beside the pipeline share (rescore, crossfit_dpo): `--set key.path=value`
overrides, the params file saved next to the numbers it produced, and scoring + evaluation as the
pipeline's score and evaluate stages do them.

Kept out of params.py and the stage modules, which DVC stages depend on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from aesthetic_llm.errors import UserError
from aesthetic_llm.io_utils import atomic_write_text, write_json
from aesthetic_llm.params import Params


def with_overrides(data: dict, sets: list[str]) -> dict:
    """Apply `a.b=value` (value parsed as YAML) to the active profile: the top level on demo, its overlay otherwise."""
    profile = data.get("profile", "demo")
    for item in sets:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UserError(f"--set {item!r}: expected key.path=value")
        node = data if profile == "demo" else data.setdefault("profiles", {}).setdefault(profile, {})
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"--set {item!r}: {part} is not a section")
        node[leaf] = yaml.safe_load(raw)
    return data


def params_with_sets(params_path: Path, sets: list[str], out_dir: Path) -> Params:
    """params_path with `sets` applied, saved as out_dir/params.yaml (beside the numbers it will produce)."""
    Params.load(params_path)  # a broken file is a one-line error before anything is written
    data = with_overrides(yaml.safe_load(Path(params_path).read_text(encoding="utf-8")), sets)
    out_dir.mkdir(parents=True, exist_ok=True)
    used = out_dir / "params.yaml"
    atomic_write_text(used, yaml.safe_dump(data, sort_keys=False))
    return Params.load(used)


def score_and_evaluate(p: Params, out_dir: Path, seeds: list[int] | None = None) -> dict[str, Any]:
    """Score the base and each training seed's models (default: every seed of `seeds`) into score.out_dir and
    evaluate them as the evaluate stage does into out_dir/metrics.json."""
    from aesthetic_llm.evaluation.evaluate import evaluate_with_params
    from aesthetic_llm.params import training_seeds
    from aesthetic_llm.paths import predictions_file
    from aesthetic_llm.scoring.settings import ScoreSettings, model_table
    from aesthetic_llm.scoring.stage import score_all

    seeds = training_seeds(p) if seeds is None else seeds
    files, seconds = [], {}
    for seed in (None, *seeds):
        files.append(predictions_file(p.str("score.out_dir"), seed))
        seconds["base" if seed is None else f"seed{seed}"] = score_all(
            ScoreSettings.from_params(p, seed), model_table(p, seed), files[-1], seed
        )["seconds"]
    metrics = evaluate_with_params(p, files, Path(p.str("data.out_dir")) / "hard_pairs.csv", seeds=seeds)
    metrics["profile"], metrics["scoring_seconds"] = p.profile, seconds
    write_json(out_dir / "metrics.json", metrics)
    return metrics
