"""Check params.yaml and the inputs a profile needs before any stage runs: one clear line per problem."""

from __future__ import annotations

import os
from pathlib import Path

from aesthetic_llm.annotate.stage import BACKENDS
from aesthetic_llm.data.manifest import SPLITS
from aesthetic_llm.data.prepare import DATASETS
from aesthetic_llm.errors import UserError
from aesthetic_llm.levels import SCORE_MODES
from aesthetic_llm.numerics import CPU_NUMERICS, numerics_env
from aesthetic_llm.params import Params, training_seeds
from aesthetic_llm.train.datasets import PAIR_STRATEGIES
from aesthetic_llm.train.settings import PairSettings, stage_settings, template_for


def check(params: Params) -> list[str]:
    """Validate every value the stages read; return notes; raise UserError on the first hard problem."""
    p = params
    p.int("seed")
    training_seeds(p)
    numerics_env(p.str("compute.cpu_numerics", choices=CPU_NUMERICS), p.int("compute.threads", lo=1))
    p.int("levels.num_levels", lo=2)
    p.str("model.name_or_path")
    template_for(p)  # model.family / model.template: a supported family, or a one-line error naming them
    p.str("data.dataset", choices=DATASETS)
    p.int("data.image_size", lo=28)
    for split in SPLITS:
        p.int(f"data.crops_per_source.{split}", lo=1)
    band = p.list("data.hard_band")
    if len(band) != 2 or not all(isinstance(x, (int, float)) for x in band) or band[0] > band[1]:
        raise UserError(f"{p.source}: data.hard_band: expected [low, high] numbers, got {band!r}")
    p.num("data.hard_pair_max_delta", lo=0.0)
    p.str("annotate.backend", choices=BACKENDS)
    for stage in ("sft", "dpo"):  # the training stages' own settings, as their entry points build them
        settings, _ = stage_settings(p, stage)
        if not settings.config.exists():
            raise UserError(f"{p.source}: {stage}.config: {settings.config} not found")
    PairSettings.from_params(p, PAIR_STRATEGIES)
    if p.num("dpo.sft_holdout", 0.0, lo=0.0) >= 1.0:
        raise UserError(f"{p.source}: dpo.sft_holdout: must be below 1 (SFT needs some train photos)")
    p.str("score.mode", choices=SCORE_MODES)
    p.int("score.samples", lo=1)
    p.int("score.max_new_tokens", lo=1)
    p.int("evaluate.bootstrap", lo=0)
    p.num("evaluate.ci", lo=0.5, hi=0.999)

    notes = []
    if p.profile == "demo" and p.str("model.name_or_path") == p.get("base.out_dir", None):
        base = Path(p.str("model.name_or_path"))
        if not (base / "pretrain_record.json").exists():
            raise UserError(
                f"{p.source}: model.name_or_path: {base} has no pretrain_record.json "
                "(it is committed: `git checkout -- pretrained/`, or rebuild it with `make base-model`)"
            )
        from aesthetic_llm.model.pretrain import verify_record

        try:
            verify_record(base)
        except ValueError as exc:
            raise UserError(f"{exc} (restore it with git, or `make base-model` to regenerate both)") from None
    if p.str("data.dataset") == "ava":
        root = Path(p.str("data.ava_root"))
        if not root.exists() and not p.str("data.ava_url", ""):
            raise UserError(
                f"{p.source}: data.ava_root: {str(root) or '(empty)'} does not exist and data.ava_url is not set — "
                f"profile {p.profile} needs AVA on disk or a URL to fetch it from (profiles.{p.profile}.data)"
            )
        for split in SPLITS:
            p.int(f"data.subset_sizes.{split}", lo=0)
    if p.str("annotate.backend") == "api":
        from aesthetic_llm.annotate.api_config import ApiConfig

        env = ApiConfig.from_params(p).api_key_env()
        if not os.environ.get(env):
            raise UserError(
                f"annotate.backend is api ({p.str('annotate.api.base_url')}) but {env} is not set in the environment"
            )
    return notes
