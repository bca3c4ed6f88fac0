#!/usr/bin/env python
"""Level-probability scoring throughput on the demo's tiny Qwen2-VL (CPU): images/s for

  batched     our scorer: one prompt pass per batch + one cached pass for all labels of all images
  per_image   the same scorer, one image at a time
  per_level   the naive way: one uncached forward per (image, level) over prompt + label

    python benchmarks/score.py [--images 48] [--batch-size 16] [--out benchmarks/results/score.json]

Mode `direct` (the distribution at "Rating Level:"), so the numbers measure scoring, not generation.
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
            ids = torch.cat([enc["input_ids"], torch.tensor([cand])], dim=1)
            mtt = torch.cat([enc["mm_token_type_ids"], torch.zeros((1, len(cand)), dtype=torch.long)], dim=1)
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/score.json")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from aesthetic_llm.scoring import LevelScorer
    from aesthetic_llm.tiny_model import build_tiny_model

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
