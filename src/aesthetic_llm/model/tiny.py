"""Build a tiny Qwen2-VL-architecture checkpoint from scratch, saved exactly like a hub checkpoint.

No weights are downloaded: the tokenizer is a byte-level BPE trained here with Qwen2's pre-tokenizer
(digits split one by one, so "10" is two tokens, as with Qwen), with Qwen2-VL's special tokens and
chat template; the model is randomly initialised from a small Qwen2VLConfig. Everything downstream
loads it through AutoProcessor / AutoModelForImageTextToText, as it would load Qwen2-VL-7B-Instruct.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aesthetic_llm.critic import phrase_bank
from aesthetic_llm.io_utils import write_json
from aesthetic_llm.levels import level_labels
from aesthetic_llm.prompts import CRITIC_INSTRUCTION, RATING_PREFIX, score_instruction

# Qwen2's pre-tokenizer split pattern (tokenizer.json of Qwen/Qwen2-VL-7B-Instruct).
QWEN2_SPLIT_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
# Qwen2-VL-Instruct's chat template (chat_template.json on the hub), unchanged.
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tokenizer_corpus(labels: list[str]) -> Iterator[str]:
    """Text the demo tokenizer is trained on: prompts, critic phrases, and level labels."""
    for _ in range(20):
        yield score_instruction(len(labels))
        yield CRITIC_INSTRUCTION
        yield "You are a helpful assistant."
        for phrase in phrase_bank():
            yield f"Analysis: {phrase} {RATING_PREFIX} {labels[0]}"
        for label in labels:
            yield f"{RATING_PREFIX} {label}"


def build_tokenizer(vocab_size: int, num_levels: int) -> Any:
    """Train a byte-level BPE on the project's own prompt/critique vocabulary; return a Qwen2TokenizerFast."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2TokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(tokenizer_corpus(level_labels(num_levels)), trainer=trainer)
    return Qwen2TokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        additional_special_tokens=SPECIAL_TOKENS[1:],
        model_max_length=4096,
        clean_up_tokenization_spaces=False,
        errors="replace",
        split_special_tokens=False,
    )


# Qwen/Qwen2-VL-7B-Instruct's config.json sizes (8.29 B parameters): random weights of this shape stand in
# for the real checkpoint in the GPU benchmarks (nothing is downloaded). The tokenizer stays the demo's;
# the embedding keeps the real 152,064 rows, so memory and the LM-head cost are the real ones.
QWEN2VL_7B_BUILD: dict[str, Any] = {
    "vocab_size": 1024,
    "embedding_rows": 152064,
    "tie_word_embeddings": False,
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "mrope_section": [16, 24, 24],
    "max_position_embeddings": 32768,
    "vision_depth": 32,
    "vision_embed_dim": 1280,
    "vision_num_heads": 16,
    "image_size": 512,  # the paper configs' image_max_pixels 262144 = 512 x 512
}
BUILD_PRESETS = {"qwen2-vl-7b": QWEN2VL_7B_BUILD}


def build_model(
    cfg: dict[str, Any], num_levels: int, seed: int, dtype: Any = None, device: str | None = None
) -> tuple[Any, Any, dict[str, Any]]:
    """A randomly initialised Qwen2-VL of cfg's sizes with the demo tokenizer: (model, processor, summary).

    dtype/device build the weights in place (an 8 B model straight into GPU bf16 memory).
    """
    import torch
    from transformers import (
        AutoModelForImageTextToText,
        Qwen2VLConfig,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    torch.manual_seed(seed)
    tokenizer = build_tokenizer(int(cfg["vocab_size"]), num_levels)
    tokenizer.chat_template = CHAT_TEMPLATE
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    # Round the embedding rows up to a multiple of 64, as Qwen pads its vocabulary.
    vocab_rows = int(cfg.get("embedding_rows") or (len(tokenizer) + 63) // 64 * 64)
    tie = bool(cfg.get("tie_word_embeddings", True))

    hidden = int(cfg["hidden_size"])
    config = Qwen2VLConfig(
        text_config={
            "vocab_size": vocab_rows,
            "hidden_size": hidden,
            "intermediate_size": int(cfg["intermediate_size"]),
            "num_hidden_layers": int(cfg["num_hidden_layers"]),
            "num_attention_heads": int(cfg["num_attention_heads"]),
            "num_key_value_heads": int(cfg["num_key_value_heads"]),
            "max_position_embeddings": int(cfg.get("max_position_embeddings", 4096)),
            "rope_scaling": {"type": "mrope", "mrope_section": list(cfg["mrope_section"])},
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
            "tie_word_embeddings": tie,
        },
        vision_config={
            "depth": int(cfg["vision_depth"]),
            "embed_dim": int(cfg["vision_embed_dim"]),
            "num_heads": int(cfg["vision_num_heads"]),
            "hidden_size": hidden,
            "mlp_ratio": 4,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=tie,
    )
    previous = torch.get_default_dtype()
    if dtype is not None:
        torch.set_default_dtype(dtype)
    try:
        with torch.device(device or "cpu"):
            model = AutoModelForImageTextToText.from_config(config)
    finally:
        torch.set_default_dtype(previous)
    model.generation_config.eos_token_id = [ids["<|im_end|>"], ids["<|endoftext|>"]]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.generation_config.do_sample = False

    px = int(cfg["image_size"]) ** 2
    image_processor = Qwen2VLImageProcessor(min_pixels=px // 4, max_pixels=px, patch_size=14, merge_size=2)
    video_processor = Qwen2VLVideoProcessor(min_pixels=px // 4, max_pixels=px, patch_size=14, merge_size=2)
    processor = Qwen2VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=CHAT_TEMPLATE,
    )
    summary = {
        "architecture": "Qwen2VLForConditionalGeneration",
        "parameters": sum(p.numel() for p in model.parameters()),
        "vocab_size": len(tokenizer),
        "embedding_rows": vocab_rows,
        "seed": seed,
        "config": cfg,
        "init": "random",
    }
    return model, processor, summary


def build_tiny_model(out_dir: str | Path, cfg: dict[str, Any], num_levels: int, seed: int) -> dict[str, Any]:
    """Write tokenizer, processor and a randomly initialised Qwen2-VL to out_dir; return a summary."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model, processor, summary = build_model(cfg, num_levels, seed)
    model.save_pretrained(out_dir, safe_serialization=True)
    processor.save_pretrained(out_dir)
    write_json(out_dir / "build_info.json", summary)
    return summary


def describe(out_dir: str | Path) -> str:
    info = json.loads((Path(out_dir) / "build_info.json").read_text())
    return f"{info['architecture']} with {info['parameters'] / 1e6:.2f} M parameters, vocab {info['vocab_size']}"
