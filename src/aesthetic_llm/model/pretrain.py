"""Pre-training the demo's base model: general visual knowledge from measured properties, never scores.

A random-init tiny Qwen2-VL cannot see, so it cannot play the study's base (Qwen2-VL-7B, which sees
but is not calibrated to aesthetics). This stage gives it eyes, honestly:

- corpus: random crops of the *train* split's source photos only (val/test/unseen photos are never
  read), half of them normalised references, each with 0–`max_degradations` seen degradation types
  of random strength, drawn from the stage's own seed (so no pipeline image is reproduced);
- targets, all measured from the pixels: (1) a caption — the critic's property sentences (exposure,
  contrast, sharpness, noise, colour) — learned by the language model; for `rate_fraction` of the
  images the rating prompt is asked instead and answered with those sentences and a rule-of-thumb
  level ("more edge energy looks better", `critic.rule_of_thumb_level`): the loose, biased prior a
  web-trained VLM brings to a rating prompt, so zero-shot is weak but not blind; (2) six region statistics
  for each of the 16 image tokens (luminance mean and spread, gradient energy at two scales,
  red-green and yellow-blue spread) and 14 whole-image ones (`global_stats`: clipping, gradient
  energy ratios, noise, colourfulness, blockiness), learned by linear heads on the vision output that
  are thrown away afterwards. Dense targets are what make a from-scratch ViT learn in minutes on 2 cores: a
  score-only head on the same vision tower reached test SRCC 0.39 where one with them reached 0.56.

No MOS, no level and no degradation strength is ever a target. The record written beside the
checkpoint holds the params, corpus recipe, seed, loss curve, versions and the weights' sha256.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from aesthetic_llm.data.demo import SEEN_DEGRADATIONS
from aesthetic_llm.io_utils import sha256_file, write_json
from aesthetic_llm.model.corpus import N_DAMAGE_STATS, N_GLOBAL_STATS, N_REGION_STATS, build_corpus
from aesthetic_llm.prompts import score_instruction

DESCRIBE_INSTRUCTION = "Describe the exposure, contrast, sharpness, noise and colour of this photo."
RECORD_NAME = "pretrain_record.json"


def _lr_at(step: int, total: int, warmup: int, peak: float) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * 0.5 * (1 + math.cos(math.pi * progress))


def _standardise(a: np.ndarray, n_train: int) -> Any:
    import torch

    t = torch.tensor(a)
    flat = t[:n_train].reshape(-1, t.shape[-1])
    return (t - flat.mean(0)) / flat.std(0).clamp_min(1e-6)


def _r2(pred: Any, target: Any) -> float:
    return round(1 - float(((pred - target) ** 2).mean() / target.var()), 4)


class _Heads:
    """Linear heads on the vision output, discarded after pre-training: 6 statistics per image token,
    14 whole-image and 10 damage statistics from the tokens' [mean, std]."""

    def __init__(self, hidden: int, damage_weight: float) -> None:
        import torch

        self.region = torch.nn.Linear(hidden, N_REGION_STATS)
        self.whole = torch.nn.Linear(2 * hidden, N_GLOBAL_STATS)
        self.damage = torch.nn.Linear(2 * hidden, N_DAMAGE_STATS)
        self.damage_weight = damage_weight

    def parameters(self) -> list[Any]:
        return [q for m in (self.region, self.whole, self.damage) for q in m.parameters()]

    def to(self, device: Any) -> _Heads:
        for m in (self.region, self.whole, self.damage):
            m.to(device)
        return self

    def __call__(self, tokens: Any, targets: tuple[Any, Any, Any]) -> tuple[Any, tuple[Any, Any, Any]]:
        import torch

        pooled = torch.cat([tokens.mean(1), tokens.std(1)], dim=-1)
        preds = (self.region(tokens), self.whole(pooled), self.damage(pooled))
        mse = torch.nn.functional.mse_loss
        loss = mse(preds[0], targets[0]) + mse(preds[1], targets[1])
        return loss + self.damage_weight * mse(preds[2], targets[2]), preds


def _vision_tokens(model: Any, pixel_values: Any, grid_thw: Any, n: int) -> Any:
    out = model.model.visual(pixel_values, grid_thw=grid_thw)
    out = getattr(out, "pooler_output", out)
    return out.reshape(n, -1, model.config.text_config.hidden_size)


def pretrain_vision(
    model: Any, processor: Any, images: list[Any], targets: tuple[Any, Any, Any], heads: _Heads,
    n_train: int, cfg: dict[str, Any], log: Any,
) -> list[dict[str, float]]:  # fmt: skip
    """Phase 1: the vision tower alone learns to measure (region, whole-image and damage statistics).

    Without the language model a step costs a sixth as much, so the ViT sees each corpus crop many
    times: measured, a frozen-feature probe's test SRCC rose from 0.40 (joint training) to 0.54-0.65."""
    import torch

    pix, grid = [], None
    for i in range(0, len(images), 500):  # pre-processed once, kept in half precision
        enc = processor.image_processor(images=images[i : i + 500], return_tensors="pt")
        pix.append(enc["pixel_values"].reshape(len(images[i : i + 500]), -1, enc["pixel_values"].shape[-1]).half())
        grid = enc["image_grid_thw"][:1]
    device = next(model.parameters()).device
    pixels = torch.cat(pix).to(device)
    targets = tuple(t.to(device) for t in targets)
    params = list(model.model.visual.parameters()) + heads.parameters()
    peak, steps = float(cfg["vision_learning_rate"]), int(cfg["vision_steps"])
    bs, warmup = int(cfg["vision_batch_size"]), int(cfg["warmup_steps"])
    opt = torch.optim.AdamW(params, lr=peak, weight_decay=float(cfg["weight_decay"]))
    gen = torch.Generator().manual_seed(int(cfg["seed"]) + 1)

    def run(idx: Any) -> tuple[Any, tuple[Any, Any, Any]]:
        tokens = _vision_tokens(
            model, pixels[idx].float().reshape(-1, pixels.shape[-1]), grid.repeat(len(idx), 1), len(idx)
        )
        return heads(tokens, tuple(t[idx] for t in targets))

    curve, t0 = [], time.time()
    every = max(1, int(cfg["eval_every"]) * 2)  # vision steps are ~6x cheaper: evaluate half as often
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, steps, warmup, peak)
        loss, _ = run(torch.randint(0, n_train, (bs,), generator=gen).to(device))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if (step + 1) % every == 0 or step + 1 == steps:
            with torch.no_grad():
                held = torch.arange(n_train, len(images), device=device)
                _, preds = run(held)
            point = {"step": step + 1, "train_loss": round(loss.item(), 4), "seconds": round(time.time() - t0, 1)}
            for name, pred, tgt in zip(("region", "whole", "damage"), preds, targets, strict=True):
                point[f"eval_{name}_r2"] = _r2(pred, tgt[held])
            curve.append(point)
            log(json.dumps({"phase": "vision", **point}))
    return curve


def pretrain(
    init_dir: str | Path,
    out_dir: str | Path,
    photos: list[Any],
    cfg: dict[str, Any],
    log: Any = print,
    device: str = "cpu",
) -> dict[str, Any]:
    """Pre-train the model in init_dir on the measured-property corpus; save to out_dir; return the record.

    Phase 1 (`vision_steps` > 0): the vision tower alone regresses the measured statistics. Phase 2
    (`steps`): the language model learns the captions and the rule-of-thumb rating; the vision side is
    frozen after phase 1 (as in SFT), or, without phase 1, trained jointly with the statistics heads.
    device "cuda" runs both phases on a GPU (not bit-identical to CPU; docs/demo-base-model.md has its speed)."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    seed = int(cfg["seed"])
    torch.manual_seed(seed)
    processor = AutoProcessor.from_pretrained(str(init_dir))
    model = AutoModelForImageTextToText.from_pretrained(str(init_dir), dtype=torch.float32).to(device)
    processor.tokenizer.padding_side = "right"
    hidden = model.config.text_config.hidden_size
    t_start = time.time()
    n_train, n_eval = int(cfg["corpus_size"]), int(cfg["eval_size"])
    num_levels = int(cfg["num_levels"])
    images, answers, stats, whole, damage = build_corpus(
        photos,
        n_train + n_eval,
        int(cfg["image_size"]),
        seed,
        int(cfg["max_degradations"]),
        float(cfg["rate_fraction"]),
        num_levels,
    )
    log(f"corpus: {len(images)} images from {len(photos)} photos in {time.time() - t_start:.0f}s")
    targets = tuple(_standardise(a, n_train) for a in (stats, whole, damage))
    damage_w = float(cfg.get("damage_weight", 0.0))
    heads = _Heads(hidden, damage_w).to(device)
    vision_curve: list[dict[str, float]] = []
    joint = int(cfg.get("vision_steps", 0)) <= 0
    if not joint:
        model.train()
        vision_curve = pretrain_vision(model, processor, images, targets, heads, n_train, cfg, log)
        for q in model.model.visual.parameters():
            q.requires_grad_(False)

    prompts, prompt_lens = {}, {}
    for rate, instruction in ((False, DESCRIBE_INSTRUCTION), (True, score_instruction(num_levels))):
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": instruction}]}]
        prompts[rate] = processor.apply_chat_template(messages, add_generation_prompt=True)
        enc = processor(text=[prompts[rate]], images=[images[0]], return_tensors="pt")
        prompt_lens[rate] = enc["input_ids"].shape[1]
    texts = [prompts[rate] + answer + "<|im_end|>\n" for rate, answer in answers]

    captured: dict[str, Any] = {}

    def grab(_module: Any, _inputs: Any, output: Any) -> None:
        captured["tokens"] = getattr(output, "pooler_output", output)

    hook = model.model.visual.register_forward_hook(grab)
    params = [q for q in model.parameters() if q.requires_grad] + (heads.parameters() if joint else [])
    peak = float(cfg["learning_rate"])
    opt = torch.optim.AdamW(params, lr=peak, weight_decay=float(cfg["weight_decay"]))
    steps, bs, warmup = int(cfg["steps"]), int(cfg["batch_size"]), int(cfg["warmup_steps"])
    aux_w = float(cfg["aux_weight"]) if joint else 0.0
    gen = torch.Generator().manual_seed(seed)

    on_device = tuple(t.to(device) for t in targets)  # moved once, indexed per batch

    def batch_loss(idx: list[int]) -> tuple[Any, Any, tuple[Any, Any, Any]]:
        enc = processor(
            text=[texts[i] for i in idx], images=[images[i] for i in idx], return_tensors="pt", padding=True
        ).to(device)
        labels = enc["input_ids"].clone()
        for row, i in enumerate(idx):
            labels[row, : prompt_lens[answers[i][0]]] = -100
        labels[enc["attention_mask"] == 0] = -100
        out = model(**enc, labels=labels)
        aux, preds = heads(captured["tokens"].reshape(len(idx), -1, hidden), tuple(t[idx] for t in on_device))
        return out.loss, aux, preds

    curve: list[dict[str, float]] = []
    model.train()
    t0 = time.time()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, steps, warmup, peak)
        idx = torch.randint(0, n_train, (bs,), generator=gen).tolist()
        lm, aux, _ = batch_loss(idx)
        loss = lm + aux_w * aux
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if (step + 1) % int(cfg["eval_every"]) == 0 or step + 1 == steps:
            model.eval()
            with torch.no_grad():
                ev = [
                    batch_loss(list(range(n_train + i, min(n_train + i + 64, n_train + n_eval))))
                    for i in range(0, n_eval, 64)
                ]
            model.train()
            point = {
                "step": step + 1,
                "train_caption_loss": round(lm.item(), 4),
                "eval_caption_loss": round(float(np.mean([float(e[0]) for e in ev])), 4),
                "seconds": round(time.time() - t0, 1),
            }
            if joint:
                point["train_statistics_loss"] = round(aux.item(), 4)
                for k, name in enumerate(("region", "whole", "damage")):
                    point[f"eval_{name}_r2"] = _r2(torch.cat([e[2][k] for e in ev]).cpu(), targets[k][n_train:])
            curve.append(point)
            log(json.dumps(point))
    hook.remove()
    for q in model.parameters():
        q.requires_grad_(True)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.eval()
    model.to("cpu").save_pretrained(out_dir, safe_serialization=True)
    processor.save_pretrained(out_dir)
    import transformers

    record = {
        "what": "demo base: tiny Qwen2-VL pre-trained on measured image properties (never scores)",
        "init": str(init_dir),
        "config": cfg,
        "corpus": {
            "photos": "train split's source photos only (data.split_sources decides which)",
            "n_photos": len(photos),
            "images": n_train,
            "eval_images": n_eval,
            "recipe": "50% reference crops (detail-picked, luminance-normalised), 50% raw random crops; "
            f"0-{cfg['max_degradations']} of {list(SEEN_DEGRADATIONS)} at strength U(0,1)",
            "targets": "caption = critic property sentences from measured pixels (or, for rate_fraction of them, "
            "the rating prompt answered with those sentences and critic.rule_of_thumb_level); linear heads on the "
            f"vision output: 16x{N_REGION_STATS} region statistics, {N_GLOBAL_STATS} whole-image statistics"
            + (f", {N_DAMAGE_STATS} full-reference damage statistics (weight {damage_w})" if damage_w else ""),
            "phases": "joint (vision + language, statistics heads beside the caption loss)"
            if joint
            else "1: vision tower + statistics heads alone (vision_steps); 2: captions with the vision side frozen",
            "rating_examples": sum(rate for rate, _ in answers[:n_train]),
        },
        "instructions": {"describe": DESCRIBE_INSTRUCTION, "rate": score_instruction(num_levels)},
        "vision_curve": vision_curve,
        "curve": curve,
        "final": {**{f"vision_{k}": v for k, v in (vision_curve[-1:] or [{}])[0].items()}, **(curve[-1:] or [{}])[0]},
        "seconds": round(time.time() - t_start, 1),
        "device": torch.cuda.get_device_name(0) if str(device).startswith("cuda") else "cpu",
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "python": platform.python_version(),
        },
        "sha256": {"model.safetensors": sha256_file(out_dir / "model.safetensors")},
    }
    write_json(out_dir / RECORD_NAME, record)
    return record


def verify_record(model_dir: str | Path) -> None:
    """Raise ValueError when the weights in model_dir are not the ones its record names."""
    model_dir = Path(model_dir)
    record = json.loads((model_dir / RECORD_NAME).read_text())
    for name, digest in record["sha256"].items():
        actual = hashlib.sha256((model_dir / name).read_bytes()).hexdigest()
        if actual != digest:
            raise ValueError(f"{model_dir / name}: sha256 {actual} != {digest} recorded in {RECORD_NAME}")
