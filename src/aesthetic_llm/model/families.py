"""Model families: what differs between the vision-language models the pipeline trains and scores.

A family ties a checkpoint's `model_type` (config.json) to the LLaMA-Factory template that trains it and to
what the level read-out needs: the token that ends the assistant turn (it follows the label, which is how
"1" and "10" are told apart), the system prompt LLaMA-Factory's template puts in front (the scorer sends
the same, so scoring prompts match training prompts token for token), whether positions are Qwen's 3-D
M-RoPE, and processor settings that make the scorer see an image as training did. Selecting one is
`model.family` (auto: read from the checkpoint). tests/model/test_families.py checks every entry against
LLaMA-Factory's own template and vision-module registry and runs a tiny checkpoint of each through
SFT → DPO → merge → scoring.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aesthetic_llm.errors import UserError

QWEN_SYSTEM = "You are a helpful assistant."
# LLaMA-Factory's `intern_vl` default system prompt (InternVL's own), sent by the scorer as training saw it.
INTERNVL_SYSTEM = (
    "你是书生·万象，英文名是InternVL，是由上海人工智能实验室、清华大学及多家合作单位联合开发的多模态大语言模型。"
)


@dataclass(frozen=True)
class Family:
    name: str
    model_types: tuple[str, ...]  # config.json `model_type` values of this family
    template: str  # LLaMA-Factory template for the instruct checkpoints
    end_of_turn: str  # the token that closes an assistant turn (written right after the level label)
    system: str | None  # LLaMA-Factory's default system prompt for `template` (None: the template has none)
    mrope: bool  # 3-D rotary positions (get_rope_index) rather than 1-D ones
    hub_ids: tuple[str, ...]  # instruct checkpoints a user puts in model.name_or_path
    hub_prefixes: tuple[str, ...]  # hub-id prefixes recognised when the config cannot be read (offline)
    processor_kwargs: dict[str, Any] = field(default_factory=dict)  # scorer's processor call, as LF trains
    thinking_template: str | None = None  # the template of the family's "thinking" checkpoints, if any
    status: str = "CPU pipeline (tiny checkpoint); real weights untested here"


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family(
            "qwen2_vl",
            ("qwen2_vl",),
            "qwen2_vl",
            "<|im_end|>",
            QWEN_SYSTEM,
            mrope=True,
            hub_ids=("Qwen/Qwen2-VL-7B-Instruct", "Qwen/Qwen2-VL-2B-Instruct"),
            hub_prefixes=("Qwen/Qwen2-VL-",),
            status="CPU pipeline (demo) and GPU benchmark at 7B size; the study's model",
        ),
        Family(
            "qwen2_5_vl",
            ("qwen2_5_vl",),
            "qwen2_vl",  # LLaMA-Factory trains Qwen2.5-VL with the qwen2_vl template
            "<|im_end|>",
            QWEN_SYSTEM,
            mrope=True,
            hub_ids=("Qwen/Qwen2.5-VL-7B-Instruct", "Qwen/Qwen2.5-VL-3B-Instruct"),
            hub_prefixes=("Qwen/Qwen2.5-VL-",),
        ),
        Family(
            "qwen3_vl",
            ("qwen3_vl",),
            "qwen3_vl_nothink",  # Instruct checkpoints: no thinking block
            "<|im_end|>",
            None,
            mrope=True,
            hub_ids=("Qwen/Qwen3-VL-8B-Instruct", "Qwen/Qwen3-VL-4B-Instruct", "Qwen/Qwen3-VL-2B-Instruct"),
            hub_prefixes=("Qwen/Qwen3-VL-",),
            thinking_template="qwen3_vl",
        ),
        Family(
            "internvl",
            ("internvl",),
            "intern_vl",
            "<|im_end|>",
            INTERNVL_SYSTEM,
            mrope=False,
            hub_ids=("OpenGVLab/InternVL3-8B-hf", "OpenGVLab/InternVL3-2B-hf", "OpenGVLab/InternVL3-1B-hf"),
            hub_prefixes=("OpenGVLab/InternVL3", "OpenGVLab/InternVL2_5"),
            # LLaMA-Factory tiles an image into patches only when the processor object says so (it does
            # not by default); transformers' InternVL processor tiles by default. Score as training saw it.
            processor_kwargs={"crop_to_patches": False},
        ),
    )
}
BY_MODEL_TYPE = {t: f for f in FAMILIES.values() for t in f.model_types}
THINK_END = "</think>"


def supported() -> str:
    return ", ".join(FAMILIES)


def by_name(name: str, where: str = "model.family") -> Family:
    if name not in FAMILIES:
        raise UserError(f"{where}: unknown model family {name!r} (supported: {supported()})")
    return FAMILIES[name]


def by_model_type(model_type: str, where: str) -> Family:
    if model_type not in BY_MODEL_TYPE:
        raise UserError(f"{where}: model_type {model_type!r} is not a supported family (supported: {supported()})")
    return BY_MODEL_TYPE[model_type]


def _local_config(path: Path) -> Path | None:
    """config.json of a checkpoint dir, or of the base a LoRA adapter dir names."""
    if (path / "config.json").exists():
        return path / "config.json"
    adapter = path / "adapter_config.json"
    if adapter.exists():
        base = json.loads(adapter.read_text(encoding="utf-8")).get("base_model_name_or_path", "")
        return _local_config(Path(base)) if base and Path(base).exists() else None
    return None


def detect(model: str | Path) -> Family:
    """The family of a checkpoint directory (its config.json) or hub id (its config, or its name offline)."""
    path = Path(model)
    config = _local_config(path) if path.exists() else None
    if config is not None:
        model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type", "")
        return by_model_type(model_type, str(config))
    if path.exists():
        raise UserError(f"{model}: no config.json (not a checkpoint directory)")
    for family in FAMILIES.values():
        if any(str(model).startswith(prefix) for prefix in family.hub_prefixes):
            return family
    try:
        from transformers import AutoConfig

        return by_model_type(AutoConfig.from_pretrained(str(model)).model_type, str(model))
    except (OSError, ValueError) as exc:
        raise UserError(
            f"{model}: cannot read its config to infer the model family ({exc.__class__.__name__}); "
            f"set model.family (supported: {supported()})"
        ) from None


def resolve(family: str, model: str | Path) -> Family:
    """`model.family` as params give it: a family name, or `auto` (detected from the checkpoint). A name
    that contradicts a local checkpoint's own config is an error, not a silent mis-template."""
    if family == "auto":
        return detect(model)
    chosen = by_name(family)
    if Path(model).exists() and _local_config(Path(model)) is not None and detect(model) != chosen:
        raise UserError(f"model.family {family!r}: {model} is a {detect(model).name} checkpoint")
    return chosen


def strip_thinking(text: str) -> str:
    """The answer after a reasoning block (`<think>…</think>`), where the level is read; text unchanged
    when there is none."""
    idx = text.rfind(THINK_END)
    return text[idx + len(THINK_END) :].lstrip() if idx >= 0 else text
