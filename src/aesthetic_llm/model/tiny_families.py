"""Tiny random-init checkpoints of the newer families, built from each family's real config, processor and
video-processor classes, saved exactly like a hub checkpoint (nothing is downloaded).

They share the demo's byte-level BPE tokenizer (model/tiny.py) plus the family's own special tokens, and a
chat template that renders the single-turn scoring prompt as the family's hub template does. They exist to
prove the pipeline's code paths per family (train → merge → score), not to score well.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aesthetic_llm.io_utils import write_json
from aesthetic_llm.model.families import by_name
from aesthetic_llm.model.tiny import SPECIAL_TOKENS, build_tokenizer

IMAGE_SIZE = 112  # as the demo: 112 px images, 16 image tokens each
TEXT = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "max_position_embeddings": 4096}  # fmt: skip
VOCAB = 1024

# One chat template per family for [system?] user(image, text) → assistant; images render as the hub
# templates render them, text as given.
_QWEN_VISION = "<|vision_start|><|image_pad|><|vision_end|>"


def _chatml_template(image: str, default_system: str | None) -> str:
    system = (
        "{% if messages[0]['role'] != 'system' %}<|im_start|>system\n" + default_system + "<|im_end|>\n{% endif %}"
        if default_system
        else ""
    )
    return (
        system + "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
        "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
        "{% for content in message['content'] %}{% if content['type'] == 'image' %}" + image + "{% elif "
        "content['type'] == 'text' %}{{ content['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )


CHAT_TEMPLATES = {
    "qwen2_5_vl": _chatml_template(_QWEN_VISION, "You are a helpful assistant."),
    "qwen3_vl": _chatml_template(_QWEN_VISION, None),  # Qwen3-VL's template has no default system prompt
    "internvl": _chatml_template("<IMG_CONTEXT>", None),
}
EXTRA_TOKENS = {
    "qwen2_5_vl": [],
    "qwen3_vl": [],
    "internvl": ["<img>", "</img>", "<IMG_CONTEXT>", "<video>"],
}
BUILDABLE = tuple(CHAT_TEMPLATES)


def _tokenizer(family: str, num_levels: int) -> Any:
    tok = build_tokenizer(VOCAB, num_levels)
    if EXTRA_TOKENS[family]:
        tok.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[1:] + EXTRA_TOKENS[family]})
    if family == "qwen3_vl":
        tok.add_tokens(["<think>", "</think>"])  # plain added tokens, as Qwen3's: kept when decoding
    if family == "internvl":
        # transformers' InternVL processor finds its image tokens under these names (as on the hub).
        tok._set_model_specific_special_tokens(
            {"start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": "<IMG_CONTEXT>",
             "video_token": "<video>"}
        )  # fmt: skip
    tok.chat_template = CHAT_TEMPLATES[family]
    return tok


def _text_config(tok: Any, rows: int, **extra: Any) -> dict[str, Any]:
    pad, eos = tok.convert_tokens_to_ids("<|endoftext|>"), tok.convert_tokens_to_ids("<|im_end|>")
    return {**TEXT, "vocab_size": rows, "bos_token_id": pad, "eos_token_id": eos, "pad_token_id": pad, **extra}


def _qwen_ids(tok: Any) -> dict[str, int]:
    ids = {k: tok.convert_tokens_to_ids(t) for k, t in (("image_token_id", "<|image_pad|>"),
           ("video_token_id", "<|video_pad|>"), ("vision_start_token_id", "<|vision_start|>"),
           ("vision_end_token_id", "<|vision_end|>"))}  # fmt: skip
    return ids


def _qwen2_5_vl(tok: Any, rows: int) -> tuple[Any, Any]:
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    config = Qwen2_5_VLConfig(
        text_config=_text_config(tok, rows, rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]}),
        vision_config={
            "depth": 2,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_heads": 4,
            "out_hidden_size": TEXT["hidden_size"],
            "patch_size": 14,
            "window_size": 56,
            "fullatt_block_indexes": [1],
        },  # fmt: skip
        **_qwen_ids(tok),
    )
    px = IMAGE_SIZE**2
    sizes = {"min_pixels": px // 4, "max_pixels": px, "patch_size": 14, "merge_size": 2}
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(**sizes), tokenizer=tok,
        video_processor=Qwen2VLVideoProcessor(**sizes), chat_template=tok.chat_template,
    )  # fmt: skip
    return config, processor


def _qwen3_vl(tok: Any, rows: int) -> tuple[Any, Any]:
    from transformers import Qwen2VLImageProcessor, Qwen3VLConfig, Qwen3VLProcessor, Qwen3VLVideoProcessor

    rope = {"rope_type": "default", "rope_theta": 5000000.0, "mrope_section": [6, 5, 5], "mrope_interleaved": True}
    config = Qwen3VLConfig(
        text_config=_text_config(tok, rows, head_dim=32, rope_parameters=rope),
        vision_config={
            "depth": 2,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_heads": 4,
            "out_hidden_size": TEXT["hidden_size"],
            "patch_size": 16,
            "num_position_embeddings": 64,
            "deepstack_visual_indexes": [0],
        },  # fmt: skip
        **_qwen_ids(tok),
    )
    px = IMAGE_SIZE**2
    size = {"shortest_edge": px // 4, "longest_edge": px}
    processor = Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=size, patch_size=16, merge_size=2), tokenizer=tok,
        video_processor=Qwen3VLVideoProcessor(size=size, patch_size=16, merge_size=2), chat_template=tok.chat_template,
    )  # fmt: skip
    return config, processor


def _internvl(tok: Any, rows: int) -> tuple[Any, Any]:
    from transformers import GotOcr2ImageProcessor, InternVLConfig, InternVLProcessor, InternVLVideoProcessor

    patch = 14
    seq = (IMAGE_SIZE // patch) ** 2 // 4  # pixel shuffle with downsample ratio 0.5
    config = InternVLConfig(
        vision_config={
            "hidden_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "intermediate_size": 128,
            "image_size": [IMAGE_SIZE, IMAGE_SIZE],
            "patch_size": [patch, patch],
        },  # fmt: skip
        text_config={"model_type": "qwen2", **_text_config(tok, rows)},
        image_token_id=tok.convert_tokens_to_ids("<IMG_CONTEXT>"),
        image_seq_length=seq,
        downsample_ratio=0.5,
        tie_word_embeddings=True,
    )
    size = {"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    processor = InternVLProcessor(
        image_processor=GotOcr2ImageProcessor(size=size, crop_to_patches=False), tokenizer=tok,
        video_processor=InternVLVideoProcessor(size=size), image_seq_length=seq, chat_template=tok.chat_template,
    )  # fmt: skip
    return config, processor


BUILDERS = {"qwen2_5_vl": _qwen2_5_vl, "qwen3_vl": _qwen3_vl, "internvl": _internvl}


def build_family_checkpoint(family: str, out_dir: str | Path, seed: int = 0, num_levels: int = 10) -> dict[str, Any]:
    """Write a tiny random-init checkpoint of `family` (tokenizer, processor, weights) to out_dir."""
    import torch
    from transformers import AutoModelForImageTextToText

    by_name(family)
    if family not in BUILDERS:
        raise ValueError(f"no tiny builder for family {family!r} (buildable: {', '.join(BUILDERS)})")
    torch.manual_seed(seed)
    tok = _tokenizer(family, num_levels)
    rows = (len(tok) + 63) // 64 * 64
    config, processor = BUILDERS[family](tok, rows)
    model = AutoModelForImageTextToText.from_config(config)
    eos, pad = tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")
    model.generation_config.eos_token_id = [eos, pad]
    model.generation_config.pad_token_id = pad
    model.generation_config.do_sample = False
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir, safe_serialization=True)
    processor.save_pretrained(out_dir)
    summary = {"family": family, "architecture": type(model).__name__, "init": "random", "seed": seed,
               "parameters": sum(p.numel() for p in model.parameters()), "vocab_size": len(tok)}  # fmt: skip
    write_json(out_dir / "build_info.json", summary)
    return summary
