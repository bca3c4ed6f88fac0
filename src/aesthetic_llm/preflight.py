"""Check params.yaml and the inputs a profile needs before any stage runs: one clear line per problem."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import UserError
from .params import Params


def check(params: Params) -> list[str]:
    """Validate every value the stages read; return notes; raise UserError on the first hard problem."""
    p = params
    p.int("seed")
    p.int("levels.num_levels", lo=2)
    p.str("model.name_or_path")
    p.str("model.template")
    p.str("data.dataset", choices=("demo", "ava"))
    p.int("data.image_size", lo=28)
    for split in ("train", "val", "test", "unseen"):
        p.int(f"data.crops_per_source.{split}", lo=1)
    band = p.list("data.hard_band")
    if len(band) != 2 or not all(isinstance(x, (int, float)) for x in band) or band[0] > band[1]:
        raise UserError(f"{p.source}: data.hard_band: expected [low, high] numbers, got {band!r}")
    p.num("data.hard_pair_max_delta", lo=0.0)
    p.str("annotate.backend", choices=("offline", "api"))
    for stage in ("sft", "dpo"):
        p.str(f"{stage}.finetuning_type", choices=("full", "lora", "freeze"))
        p.num(f"{stage}.learning_rate", lo=0.0)
        p.num(f"{stage}.num_train_epochs", lo=0.0)
        p.int(f"{stage}.per_device_train_batch_size", lo=1)
        p.int(f"{stage}.gradient_accumulation_steps", lo=1)
        p.bool(f"{stage}.select_checkpoint", False)
        cfg = Path(p.str(f"{stage}.config"))
        if not cfg.exists():
            raise UserError(f"{p.source}: {stage}.config: {cfg} not found")
    p.num("dpo.beta", lo=0.0)
    p.str("dpo.loss", choices=("sigmoid", "hinge", "ipo", "kto_pair", "orpo", "simpo"))
    p.str("dpo.pair_strategy", choices=("near_level",))
    p.str("score.mode", choices=("cot", "direct"))
    p.int("score.batch_size", lo=1)
    p.int("score.max_new_tokens", lo=1)
    p.int("evaluate.bootstrap", lo=0)
    p.num("evaluate.ci", lo=0.5, hi=0.999)

    notes = []
    if p.str("data.dataset") == "ava":
        root = Path(p.str("data.ava_root"))
        if not root.exists():
            raise UserError(
                f"{p.source}: data.ava_root: {str(root) or '(empty)'} does not exist — profile {p.profile} needs AVA on "
                f"disk (set profiles.{p.profile}.data.ava_root)"
            )
    if p.str("annotate.backend") == "api" and not (
        os.environ.get("OPENAI_API_KEY") or os.environ.get("DASHSCOPE_API_KEY")
    ):
        raise UserError(
            "annotate.backend is api but neither OPENAI_API_KEY nor DASHSCOPE_API_KEY is set in the environment"
        )
    return notes
