#!/usr/bin/env python
"""One DeepSpeed ZeRO-2 LoRA SFT run of a Qwen2-VL-7B-sized model through the real `llamafactory-cli`
(needs a CUDA GPU): step time and peak GPU memory of the paper profile's own config.

    python benchmarks/zero2_step.py [--steps 3] [--out benchmarks/results/zero2_step.json]

What runs: `llamafactory_configs/paper/qwen2vl_7b_lora_sft.yaml` unchanged (LoRA rank 16 on all linear
layers, bf16, gradient checkpointing, batch 1 x gradient accumulation 16, ZeRO-2 from
`llamafactory_configs/deepspeed/ds_z2_config.json`, FORCE_TORCHRUN=1), with these overrides only:
the model is a random-weight Qwen2-VL of Qwen2-VL-7B-Instruct's sizes (8.29 B parameters, built
here: no hub access), the dataset is synthetic (512 x 512 images, critiques of --answer-tokens tokens
made of the demo critic's sentences), `max_steps`, and no eval/save. Random weights cost the same
FLOPs and memory as the real ones; the loss values mean nothing.

Peak memory is nvidia-smi's device-wide `memory.used` sampled every 0.2 s (CUDA context included).
`--preset demo --no-deepspeed` runs the same path on CPU at demo size, to check the script.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "llamafactory_configs/paper/qwen2vl_7b_lora_sft.yaml"


class GpuMemorySampler(threading.Thread):
    """Device-wide memory.used (MiB) from nvidia-smi every `period` seconds; keeps the maximum."""

    def __init__(self, period: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.period, self.peak_mib, self._stop_flag = period, 0, threading.Event()

    def run(self) -> None:
        while not self._stop_flag.is_set():
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.split()
            if out:
                self.peak_mib = max(self.peak_mib, int(out[0]))
            time.sleep(self.period)

    def stop(self) -> int:
        self._stop_flag.set()
        self.join()
        return self.peak_mib


def build_dataset(out: Path, tokenizer, n: int, answer_tokens: int, image_size: int, num_levels: int) -> None:
    """n synthetic SFT records in the pipeline's own LLaMA-Factory format (lf_data)."""
    from aesthetic_llm.critic import phrase_bank
    from aesthetic_llm.prompts import RATING_PREFIX
    from aesthetic_llm.train.datasets import sft_records, write_sft_dataset

    rng = random.Random(0)
    bank = phrase_bank()
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    annotations = []
    for i in range(n):
        words: list[str] = []
        while len(tokenizer.encode(" ".join(words), add_special_tokens=False)) < answer_tokens:
            words.append(rng.choice(bank))
        level = rng.randint(1, num_levels)
        path = images / f"{i:04d}.png"
        pixels = np.random.default_rng(i).integers(0, 256, (image_size, image_size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(path)
        annotations.append(
            {"image_id": f"syn{i:04d}", "path": str(path), "critique": " ".join(words) + f"\n{RATING_PREFIX} {level}"}
        )
    write_sft_dataset(out, {"aesthetic_sft": sft_records(annotations, num_levels)})


def step_seconds(log_path: Path) -> float | None:
    """Mean seconds per optimizer step after the first, from LLaMA-Factory's trainer_log.jsonl.

    Its elapsed_time is 'H:MM:SS' (1 s resolution): the mean over (last - first) / (steps - 1) keeps the
    error at 1 s / (steps - 1). The first step (allocator, kernel selection) is excluded.
    """
    elapsed: dict[int, int] = {}
    for line in log_path.read_text().splitlines():
        rec = json.loads(line)
        if "loss" in rec:  # the closing summary line repeats the last step without a loss
            h, m, s = (int(x) for x in rec["elapsed_time"].split(":"))
            elapsed.setdefault(int(rec["current_steps"]), 3600 * h + 60 * m + s)
    steps = sorted(elapsed)
    if len(steps) < 2:
        return None
    return (elapsed[steps[-1]] - elapsed[steps[0]]) / (steps[-1] - steps[0])


def billions(n: int) -> str:
    return f"{n / 1e9:.2f} B" if n >= 1e8 else f"{n / 1e6:.2f} M"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="qwen2-vl-7b", help="qwen2-vl-7b | demo (CPU check of the script)")
    ap.add_argument("--steps", type=int, default=6, help="optimizer steps (each = gradient_accumulation batches)")
    ap.add_argument("--answer-tokens", type=int, default=200)
    ap.add_argument("--work", type=Path, default=Path("/tmp/zero2_step"))
    ap.add_argument("--no-deepspeed", action="store_true", help="plain run (CPU check); DeepSpeed needs a GPU")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/zero2_step.json")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    import torch

    from aesthetic_llm.model.tiny import BUILD_PRESETS, build_model
    from aesthetic_llm.train.stage import effective_config, run_llamafactory

    cuda = torch.cuda.is_available()
    if not cuda and not args.no_deepspeed:
        sys.exit("error: a ZeRO-2 run needs a CUDA GPU (use --preset demo --no-deepspeed to check the script on CPU)")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    num_levels = int(params["levels"]["num_levels"])
    cfg = BUILD_PRESETS.get(args.preset) or params["model"]["build"]
    shutil.rmtree(args.work, ignore_errors=True)
    model_dir, data_dir, out_dir = args.work / "model", args.work / "data", args.work / "out"

    t0 = time.perf_counter()
    dtype = torch.bfloat16 if cuda else torch.float32
    model, processor, summary = build_model(cfg, num_levels, seed=0, dtype=dtype, device="cuda" if cuda else "cpu")
    model.save_pretrained(model_dir, safe_serialization=True)
    processor.save_pretrained(model_dir)
    del model
    if cuda:
        torch.cuda.empty_cache()
    build_s = time.perf_counter() - t0
    base = yaml.safe_load(CONFIG.read_text())
    accumulation = int(base["gradient_accumulation_steps"])
    build_dataset(
        data_dir,
        processor.tokenizer,
        accumulation * (args.steps + 1),
        args.answer_tokens,
        cfg["image_size"],
        num_levels,
    )

    overrides = {
        "model_name_or_path": str(model_dir),
        "dataset_dir": str(data_dir),
        "media_dir": "/",
        "output_dir": str(out_dir),
        "max_steps": args.steps,
        "save_strategy": "no",
        "eval_strategy": "no",
        "eval_dataset": None,
        "plot_loss": False,
        "warmup_ratio": 0.0,
    }
    if args.no_deepspeed:
        overrides.update(deepspeed=None, bf16=False, use_cpu=not cuda, gradient_checkpointing=False)
    else:
        overrides["deepspeed"] = str(ROOT / base["deepspeed"])
    effective = {k: v for k, v in effective_config(CONFIG, overrides).items() if v is not None}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cfg_path = args.out.with_name(args.out.stem + "_config.yaml")  # the config that produced the numbers
    cfg_path.write_text(yaml.safe_dump(effective, sort_keys=False))
    os.environ.setdefault("FORCE_TORCHRUN", "0" if args.no_deepspeed else "1")

    sampler = GpuMemorySampler() if cuda else None
    if sampler:
        sampler.start()
    t1 = time.perf_counter()
    run_llamafactory("train", cfg_path, {}, args.work / "train.log")
    wall = time.perf_counter() - t1
    peak_mib = sampler.stop() if sampler else None
    per_step = step_seconds(out_dir / "trainer_log.jsonl")
    result = (
        json.loads((out_dir / "train_results.json").read_text()) if (out_dir / "train_results.json").exists() else {}
    )
    doc = {
        "benchmark": "zero2_step",
        "model": f"{args.preset}-sized Qwen2-VL, random weights ({billions(summary['parameters'])} parameters)",
        "method": "LoRA SFT" + ("" if args.no_deepspeed else ", DeepSpeed ZeRO-2") + ", llamafactory-cli train",
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "gpus": torch.cuda.device_count() if cuda else 0,
        "torch": torch.__version__,
        "micro_batch": effective["per_device_train_batch_size"],
        "gradient_accumulation_steps": accumulation,
        "image_px": cfg["image_size"],
        "answer_tokens": args.answer_tokens,
        "optimizer_steps": args.steps,
        "seconds_per_step_after_first": per_step,
        "train_runtime_s": result.get("train_runtime"),
        "train_wall_s_incl_load": round(wall, 1),
        "model_build_and_save_s": round(build_s, 1),
        "peak_gpu_memory_gib_nvidia_smi": round(peak_mib / 1024, 2) if peak_mib else None,
        "config": cfg_path.name,  # saved beside this file
        "date": time.strftime("%Y-%m-%d"),
    }
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    mean_step = per_step if per_step is not None else float("nan")
    table = [
        "| model | method | micro-batch x accumulation | s / optimizer step | peak GPU memory (GiB) |",
        "|---|---|---|---|---|",
        f"| {doc['model']} | {doc['method']} | {doc['micro_batch']} x {accumulation} | {mean_step:.1f} | "
        f"{doc['peak_gpu_memory_gib_nvidia_smi']} |",
        f"\non {doc['device']} (torch {doc['torch']}); {cfg['image_size']} px images, {args.answer_tokens}-token "
        f"answers; s / step = mean over steps 2..{args.steps} of trainer_log.jsonl; config: {doc['config']}",
    ]
    args.out.with_suffix(".md").write_text("\n".join(table) + "\n")
    print("\n".join(table))


if __name__ == "__main__":
    main()
