#!/usr/bin/env python
"""Level-probability scoring throughput on the demo's tiny Qwen2-VL (CPU): images/s for

  batched     our scorer: one prompt pass per batch + one cached pass for all labels of all images
  per_image   the same scorer, one image at a time
  per_level   the naive way: one uncached forward per (image, level) over prompt + label

    python benchmarks/score.py [--images 48] [--batch-size 16] [--out benchmarks/results/score.json]

Mode `direct` (the distribution at "Rating Level:"), so the numbers measure scoring, not generation.

On a GPU, a Qwen2-VL-7B-sized model with random bf16 weights (sizes from the hub config, built in
place: nothing is downloaded), images/s and peak memory per batch size, direct and cot:

    python benchmarks/score.py --preset qwen2-vl-7b --batch-sizes 1 8 32 --out benchmarks/results/score_gpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def naive_per_level(scorer, images) -> list[float]:
    """Reference implementation: a full forward per image and level (what per-level generate calls cost)."""
    prompt = scorer.prompt() + "Rating Level:"
    scores = []
    for image in images:
        enc = scorer._inputs([prompt], [image])
        n = enc["input_ids"].shape[1]
        logps = []
        for cand in scorer.candidates:
            dev = enc["input_ids"].device
            ids = torch.cat([enc["input_ids"], torch.tensor([cand], device=dev)], dim=1)
            mtt = torch.cat(
                [enc["mm_token_type_ids"], torch.zeros((1, len(cand)), dtype=torch.long, device=dev)], dim=1
            )
            scorer.model.model.rope_deltas = None
            with torch.no_grad():
                logits = scorer.model(
                    input_ids=ids,
                    attention_mask=torch.ones_like(ids),
                    mm_token_type_ids=mtt,
                    pixel_values=enc["pixel_values"],
                    image_grid_thw=enc["image_grid_thw"],
                ).logits
            lp = torch.log_softmax(logits[0].float(), -1)
            logps.append(sum(lp[n - 1 + i, t].item() for i, t in enumerate(cand)))
        p = torch.softmax(torch.tensor(logps), 0)
        scores.append(float(p @ scorer.centres))
    return scores


def timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def gpu_sweep(args: argparse.Namespace, num_levels: int) -> None:
    """images/s and peak GPU memory of a preset-sized random-weight model, per batch size."""
    from aesthetic_llm.model.tiny import BUILD_PRESETS, build_model
    from aesthetic_llm.scoring.engine import LevelScorer

    cfg = BUILD_PRESETS.get(args.preset) or yaml.safe_load((ROOT / "params.yaml").read_text())["model"]["build"]
    dev = args.device
    cuda = dev == "cuda"
    t0 = time.perf_counter()
    dtype = torch.bfloat16 if cuda else torch.float32
    model, processor, summary = build_model(cfg, num_levels, seed=0, dtype=dtype, device=dev)
    build_s = time.perf_counter() - t0
    scorer = LevelScorer(args.preset, num_levels, device=dev, loaded=(processor, model))
    rng = np.random.default_rng(0)
    size = int(cfg["image_size"])
    pool = [Image.fromarray((rng.random((size, size, 3)) * 255).astype("uint8")) for _ in range(64)]
    scorer.predict(pool[:2], mode="direct")  # warm-up (kernels, allocator)
    rows = []
    for bs in args.batch_sizes:
        for mode in ("direct", "cot"):
            n_batches = 1 if mode == "cot" else max(2, 32 // bs)
            batch = [pool[i % len(pool)] for i in range(bs)]
            scorer.predict(batch, mode=mode, max_new_tokens=args.max_new_tokens)  # warm-up at this shape
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            t = time.perf_counter()
            for _ in range(n_batches):
                scorer.predict(batch, mode=mode, max_new_tokens=args.max_new_tokens)
            if cuda:
                torch.cuda.synchronize()
            dt = time.perf_counter() - t
            rows.append(
                {
                    "batch_size": bs,
                    "mode": mode,
                    "images_per_s": round(bs * n_batches / dt, 2),
                    "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
                }
            )
            print(rows[-1], flush=True)
    n_naive = 4
    t_naive, _ = timed(lambda: naive_per_level(scorer, pool[:n_naive]))
    doc = {
        "benchmark": "score",
        "model": f"{args.preset}-sized Qwen2-VL, random {str(dtype).removeprefix('torch.')} weights "
        f"({summary['parameters'] / 1e9:.2f} B parameters)",
        "image_size": size,
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "torch": torch.__version__,
        "build_s": round(build_s, 1),
        "cot_max_new_tokens": args.max_new_tokens,
        "rows": rows,
        "per_level_images_per_s": round(n_naive / t_naive, 2),
        "date": time.strftime("%Y-%m-%d"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    table = ["| batch | mode | images/s | peak GPU memory (GiB) |", "|---|---|---|---|"]
    table += [f"| {r['batch_size']} | {r['mode']} | {r['images_per_s']} | {r['peak_memory_gib']} |" for r in rows]
    table.append(
        f"\n{doc['model']}, {size} px images, on {doc['device']}; per-level (uncached forward per level) "
        f"{doc['per_level_images_per_s']} images/s; cot generates {args.max_new_tokens} tokens"
    )
    args.out.with_suffix(".md").write_text("\n".join(table) + "\n")
    print("\n".join(table))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/score.json")
    ap.add_argument("--preset", default=None, help="batch-size sweep at a preset size: qwen2-vl-7b | demo")
    ap.add_argument("--device", default="cuda", help="device of the --preset sweep (cpu only to check the script)")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--max-new-tokens", type=int, default=96)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    if args.preset:
        if args.device == "cuda" and not torch.cuda.is_available():
            sys.exit(f"error: --preset {args.preset} needs a CUDA GPU (bf16 weights of that size)")
        gpu_sweep(args, int(yaml.safe_load((ROOT / "params.yaml").read_text())["levels"]["num_levels"]))
        return
    from aesthetic_llm.model.tiny import build_tiny_model
    from aesthetic_llm.scoring.engine import LevelScorer

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    build = params["model"]["build"]
    rng = np.random.default_rng(0)
    size = int(build["image_size"])
    images = [Image.fromarray((rng.random((size, size, 3)) * 255).astype("uint8")) for _ in range(args.images)]
    with tempfile.TemporaryDirectory() as tmp:
        build_tiny_model(tmp, build, params["levels"]["num_levels"], seed=0)
        scorer = LevelScorer(tmp, params["levels"]["num_levels"], device="cpu")
        scorer.predict(images[:2], mode="direct")  # warm-up

        def batched():
            return [
                p.score
                for i in range(0, len(images), args.batch_size)
                for p in scorer.predict(images[i : i + args.batch_size], mode="direct")
            ]

        t_batch, s_batch = timed(batched)
        t_one, s_one = timed(lambda: [scorer.predict([im], mode="direct")[0].score for im in images])
        n_naive = max(4, args.images // 4)  # the naive path is slow: time a subset
        t_naive, s_naive = timed(lambda: naive_per_level(scorer, images[:n_naive]))
    # All three paths must give the same scores (padding in a batch must not change them).
    agree = float(
        max(
            np.max(np.abs(np.array(s_batch[:n_naive]) - np.array(s_naive))),
            np.max(np.abs(np.array(s_batch) - np.array(s_one))),
        )
    )
    rows = {
        "batched": args.images / t_batch,
        "per_image": args.images / t_one,
        "per_level": n_naive / t_naive,
    }
    doc = {
        "benchmark": "score",
        "model": f"tiny Qwen2-VL ({build['hidden_size']} hidden, {size} px)",
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "batch_size": args.batch_size,
        "images": args.images,
        "images_per_s": {k: round(v, 2) for k, v in rows.items()},
        "speedup_batched_vs_per_image": round(rows["batched"] / rows["per_image"], 2),
        "speedup_batched_vs_per_level": round(rows["batched"] / rows["per_level"], 2),
        "max_abs_score_diff_batched_vs_per_level": agree,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "date": time.strftime("%Y-%m-%d"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    table = ["| method | images/s |", "|---|---|"] + [f"| {k} | {v:.1f} |" for k, v in rows.items()]
    table.append(
        f"\nbatched is {doc['speedup_batched_vs_per_image']}x per-image and "
        f"{doc['speedup_batched_vs_per_level']}x per-level; max |score difference| {agree:.1e}"
    )
    args.out.with_suffix(".md").write_text("\n".join(table) + "\n")
    print("\n".join(table))


if __name__ == "__main__":
    main()
