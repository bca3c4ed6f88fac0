"""Typed settings of the score stages, built once from params.yaml at the entry point and passed in."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aesthetic_llm.errors import UserError
from aesthetic_llm.levels import SCORE_MODES
from aesthetic_llm.params import Params
from aesthetic_llm.paths import seed_dir

TRAINED = ("qalign_style", "sft", "dpo")  # trained here once per seed; zero_shot is the base as it is


@dataclass(frozen=True)
class ScoreSettings:
    """The `score` section (and what it needs from `levels`, `data`): how every model is scored."""

    num_levels: int
    mode: str
    samples: int  # cot_sampled only
    max_new_tokens: int
    batch_size: int
    splits: tuple[str, ...]
    data_dir: Path
    sample_seed: int  # cot_sampled draws: a training seed's own, or the data seed for the base model
    local_models: bool  # every model is a path this pipeline wrote (demo), not a hub id

    @classmethod
    def from_params(cls, p: Params, seed: int | None) -> ScoreSettings:
        return cls(
            num_levels=p.int("levels.num_levels", lo=2),
            mode=p.str("score.mode", choices=SCORE_MODES),
            samples=p.int("score.samples", lo=1),
            max_new_tokens=p.int("score.max_new_tokens", lo=1),
            batch_size=p.int("score.batch_size", lo=1),
            splits=tuple(p.list("score.splits")),
            data_dir=Path(p.str("data.out_dir")),
            sample_seed=p.int("seed") if seed is None else seed,
            local_models=p.profile == "demo",
        )


@dataclass(frozen=True)
class ModelRow:
    name: str
    path: str
    scheme: str  # levels | qalign5
    mode: str  # cot | cot_sampled | direct


def model_table(params: Params, seed: int | None) -> list[ModelRow]:
    """The rows one score stage scores: the base zero-shot (seed None) or one seed's trained models (the no-CoT
    ablation, SFT, DPO); plus Q-Align's method on the models `score.qalign_method_models` names."""
    mode = params.str("score.mode", choices=SCORE_MODES)
    every = ("zero_shot", *TRAINED)
    if seed is None:
        paths = {"zero_shot": params.str("model.name_or_path")}
    else:
        paths = {name: str(seed_dir(params.str(f"{name}.output_dir"), seed)) for name in TRAINED}
    rows = [
        ModelRow(name, path, "levels", "direct" if name == "qalign_style" else mode) for name, path in paths.items()
    ]
    for name in params.list("score.qalign_method_models", []):
        if name not in every:
            raise UserError(
                f"{params.source}: score.qalign_method_models: unknown model {name!r} (one of {', '.join(every)})"
            )
        if name in paths:
            rows.append(ModelRow(f"{name}_qalign5", paths[name], "qalign5", "direct"))
    return rows
