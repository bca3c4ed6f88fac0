#!/usr/bin/env python
"""Score images with a published Q-Align / OneAlign checkpoint, inside its own environment (.venv-qalign).

The checkpoints (mPLUG-Owl2 on LLaMA-2-7B) ship their modelling code on the hub and need
transformers 4.36, which cannot share the main environment (transformers 5): `make setup-qalign`
builds .venv-qalign from requirements-qalign.lock and `scripts/score_published_qalign.py` (the DVC
stage, main environment) runs this file there. It imports only the standard library, torch,
transformers and Pillow — never the aesthetic_llm package.

    .venv-qalign/bin/python src/aesthetic_llm/scoring/qalign_worker.py --model q-future/one-align \
        --name onealign_published --manifest test=data/prepared/test/manifest.csv --out P.csv

Scores are Q-Align's own: the checkpoint's `score()` (softmax over its five level words, weighted
1-5), mapped to the 1-10 MOS scale linearly. Resumable: rows already in --out are kept and skipped.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path

FIELDS = ["image_id", "model", "split", "pred", "mos"]


def die(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)
    raise SystemExit(2)


def to_mos(score: float) -> float:
    """Q-Align's 1-5 score onto the 1-10 MOS scale (a linear map: SRCC and PLCC are unchanged)."""
    return 1.0 + (score - 1.0) * 9.0 / 4.0


def read_manifest(split: str, path: Path) -> list[dict[str, str]]:
    if not path.exists():
        die(f"{path}: manifest of split {split!r} not found")
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for lineno, row in enumerate(rows, 2):
        for col in ("image_id", "path", "mos"):
            if not row.get(col):
                die(f"{path}:{lineno}: empty or missing column {col!r}")
    return rows


def done_keys(out: Path) -> set[tuple[str, str, str]]:
    if not out.exists():
        return set()
    with out.open(newline="", encoding="utf-8") as f:
        return {(r["model"], r["split"], r["image_id"]) for r in csv.DictReader(f)}


def load_model(model_id: str, dtype: str, device: str):  # noqa: ANN201 - torch types stay local
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(
        model_id, trust_remote_code=True, torch_dtype=getattr(torch, dtype), device_map=device
    ).eval()


def score_batch(model, images: list, task: str) -> list[float]:  # noqa: ANN001
    import torch

    with torch.no_grad():
        try:  # OneAlign: one model, several tasks
            out = model.score(images, task_=task, input_="image")
        except TypeError:  # single-task checkpoints (q-align-aesthetic): score(images)
            out = model.score(images)
    return [float(x) for x in out.reshape(-1).tolist()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="hub id or local directory of the published checkpoint")
    ap.add_argument("--name", required=True, help="model name written in the predictions' `model` column")
    ap.add_argument("--manifest", action="append", required=True, help="SPLIT=PATH (repeatable)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--task", default="aesthetics", help="OneAlign task: aesthetics | quality")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--dtype", default="float16", choices=("float16", "bfloat16", "float32"))
    ap.add_argument("--device", default="auto", help="device_map for from_pretrained (auto, cuda:0, cpu)")
    args = ap.parse_args()
    manifests = []
    for spec in args.manifest:
        split, sep, path = spec.partition("=")
        if not sep or not split or not path:
            die(f"--manifest {spec!r}: expected SPLIT=PATH")
        manifests.append((split, Path(path), read_manifest(split, Path(path))))

    from PIL import Image

    done = done_keys(args.out)
    todo = [(s, src, r) for s, src, rows in manifests for r in rows if (args.name, s, r["image_id"]) not in done]
    print(f"{args.name}: {len(todo)} images to score ({len(done)} already in {args.out})", flush=True)
    if not todo:
        return
    model = load_model(args.model, args.dtype, args.device)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    new_file = not args.out.exists()
    with args.out.open("a", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        if new_file:
            writer.writeheader()
        for start in range(0, len(todo), args.batch_size):
            chunk = todo[start : start + args.batch_size]
            images = []
            for _split, src, row in chunk:
                try:
                    with Image.open(row["path"]) as im:
                        images.append(im.convert("RGB"))
                except OSError as exc:
                    die(f"{src}: image {row['image_id']}: cannot read {row['path']} ({exc.__class__.__name__})")
            for (split, _, row), score in zip(chunk, score_batch(model, images, args.task), strict=True):
                writer.writerow(
                    {"image_id": row["image_id"], "model": args.name, "split": split,
                     "pred": round(to_mos(score), 5), "mos": row["mos"]}
                )  # fmt: skip
            f.flush()
            os.fsync(f.fileno())  # each batch survives an interruption: the next run resumes after it
            print(f"{args.name}: {min(start + args.batch_size, len(todo))}/{len(todo)}", flush=True)


if __name__ == "__main__":
    main()
