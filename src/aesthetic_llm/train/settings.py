"""Typed settings of the training stages, built once from params.yaml at the entry point and passed in."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aesthetic_llm.data.manifest import manifest_path
from aesthetic_llm.errors import UserError
from aesthetic_llm.levels import SCORE_MODES
from aesthetic_llm.model.families import resolve
from aesthetic_llm.params import Params

FINETUNING_TYPES = ("full", "lora", "freeze")
# LLaMA-Factory 0.9.5's FinetuningArguments.pref_loss choices (orpo and simpo train without a reference model).
PREF_LOSSES = ("sigmoid", "hinge", "ipo", "kto_pair", "orpo", "simpo")
# Learning rate when `<stage>.learning_rate` is null, by finetuning type (SFT: the related study's 2e-5 full /
# 1e-4 LoRA; DPO: the usual preference-tuning rates, 5e-7 full / 5e-6 LoRA).
DEFAULT_LR = {
    "sft": {"full": 2.0e-5, "freeze": 2.0e-5, "lora": 1.0e-4},
    "dpo": {"full": 5.0e-7, "freeze": 5.0e-7, "lora": 5.0e-6},
}


@dataclass(frozen=True)
class LoraSettings:
    rank: int
    alpha: int
    target: str  # 'all', a module name, or names joined by commas (as LLaMA-Factory reads it)


@dataclass(frozen=True)
class PreferenceSettings:
    beta: float
    loss: str
    ftx: float


@dataclass(frozen=True)
class TrainSettings:
    """One training stage's section (`sft` or `dpo`) of params.yaml, checked once."""

    stage: str
    config: Path
    template: str
    finetuning_type: str
    learning_rate: float
    num_train_epochs: float
    per_device_train_batch_size: int
    gradient_accumulation_steps: int
    select_checkpoint: bool
    lora: LoraSettings | None = None
    preference: PreferenceSettings | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_params(cls, p: Params, stage: str) -> TrainSettings:
        ft = p.str(f"{stage}.finetuning_type", choices=FINETUNING_TYPES)
        lr = p.get(f"{stage}.learning_rate", None)
        extra = p.get(f"{stage}.extra", {}) or {}
        if not isinstance(extra, dict):
            raise UserError(f"{p.source}: {stage}.extra: expected a mapping of LLaMA-Factory keys")
        return cls(
            stage=stage,
            config=Path(p.str(f"{stage}.config")),
            template=template_for(p),
            finetuning_type=ft,
            learning_rate=DEFAULT_LR[stage][ft] if lr is None else p.num(f"{stage}.learning_rate", lo=0.0),
            num_train_epochs=p.num(f"{stage}.num_train_epochs", lo=0.0),
            per_device_train_batch_size=p.int(f"{stage}.per_device_train_batch_size", lo=1),
            gradient_accumulation_steps=p.int(f"{stage}.gradient_accumulation_steps", lo=1),
            select_checkpoint=p.bool(f"{stage}.select_checkpoint", False),
            lora=_lora(p, stage) if ft == "lora" else None,
            preference=_preference(p) if stage == "dpo" else None,
            extra=dict(extra),
        )


def template_for(p: Params) -> str:
    """`model.template`, or (auto) the LLaMA-Factory template of the model's family (`model.family`; auto:
    the family of `model.name_or_path`, which everything trained from it shares)."""
    template = p.str("model.template")
    if template != "auto":
        return template
    return resolve(p.str("model.family"), p.str("model.name_or_path")).template


def _lora(p: Params, stage: str) -> LoraSettings:
    target = p.get(f"{stage}.lora_target", "all")
    if isinstance(target, list) and target and all(isinstance(t, str) for t in target):
        target = ",".join(target)
    if not isinstance(target, str) or not target:
        raise UserError(f"{p.source}: {stage}.lora_target: expected 'all', a module name or a list of them")
    return LoraSettings(p.int(f"{stage}.lora_rank", 16, lo=1), p.int(f"{stage}.lora_alpha", 32, lo=1), target)


def _preference(p: Params) -> PreferenceSettings:
    return PreferenceSettings(
        beta=p.num("dpo.beta", lo=0.0), loss=p.str("dpo.loss", choices=PREF_LOSSES), ftx=p.num("dpo.ftx", 0.0, lo=0.0)
    )


@dataclass(frozen=True)
class SelectionSettings:
    """How checkpoints are scored on val when a stage selects on the downstream metric."""

    val_manifest: Path
    num_levels: int
    mode: str
    max_new_tokens: int
    batch_size: int

    @classmethod
    def from_params(cls, p: Params, mode: str | None = None) -> SelectionSettings:
        mode = mode or p.str("score.mode", choices=SCORE_MODES)
        return cls(
            val_manifest=manifest_path(p.str("data.out_dir"), "val"),
            num_levels=p.int("levels.num_levels", lo=2),
            # cot_sampled scores greedily here: k-fold cheaper, and selection only ranks one run's checkpoints.
            mode="cot" if mode == "cot_sampled" else mode,
            max_new_tokens=p.int("score.max_new_tokens", lo=1),
            batch_size=p.int("score.batch_size", lo=1),
        )


def stage_settings(
    p: Params, stage: str, score_mode: str | None = None
) -> tuple[TrainSettings, SelectionSettings | None]:
    """A training entry point's settings: the stage's section, and how to select (None: keep the last step)."""
    settings = TrainSettings.from_params(p, stage)
    return settings, SelectionSettings.from_params(p, score_mode) if settings.select_checkpoint else None


@dataclass(frozen=True)
class OnPolicySettings:
    """Answers sampled from an SFT model: the sampled pair strategies and the cross-fitted folds."""

    samples: int
    temperature: float
    max_new_tokens: int
    batch_size: int

    @classmethod
    def from_params(cls, p: Params) -> OnPolicySettings:
        return cls(
            samples=p.int("dpo.on_policy_samples", lo=2),
            temperature=p.num("dpo.on_policy_temperature", lo=1e-6),
            max_new_tokens=p.int("dpo.on_policy_max_new_tokens", lo=1),
            batch_size=p.int("score.batch_size", lo=1),
        )


@dataclass(frozen=True)
class PairSettings:
    """How the dpo_data stage builds preference pairs (`dpo.pair_strategy` and its knobs)."""

    strategy: str
    num_levels: int
    per_image: int
    level_offsets: tuple[int, ...]
    far_min_gap: int
    cross_max_mos_gap: float
    on_policy: OnPolicySettings

    @classmethod
    def from_params(cls, p: Params, strategies: tuple[str, ...]) -> PairSettings:
        return cls(
            strategy=p.str("dpo.pair_strategy", choices=strategies),
            num_levels=p.int("levels.num_levels", lo=2),
            per_image=p.int("dpo.pairs_per_image", lo=1),
            level_offsets=tuple(int(o) for o in p.list("dpo.level_offsets")),
            far_min_gap=p.int("dpo.far_min_gap", lo=1),
            cross_max_mos_gap=p.num("dpo.cross_max_mos_gap", lo=0.0),
            on_policy=OnPolicySettings.from_params(p),
        )
