"""Checkpoint selection on the downstream metric (val SRCC), not on validation loss.

The full-vs-LoRA report this repo learns from saw validation loss hide an 18-point downstream gap:
every checkpoint a training stage saved is scored on `val` and the best one becomes the stage's model.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from aesthetic_llm.data.manifest import open_images, read_manifest
from aesthetic_llm.evaluation.metrics import srcc
from aesthetic_llm.io_utils import write_csv

_CKPT = re.compile(r"^checkpoint-(\d+)$")


def candidates(train_dir: Path, final_step: int) -> list[tuple[int, Path]]:
    """(step, dir) for every saved checkpoint plus the final weights, deduplicated by step."""
    found = {int(m.group(1)): p for p in train_dir.iterdir() if (m := _CKPT.match(p.name)) and p.is_dir()}
    found[final_step] = train_dir  # the final save wins over a checkpoint of the same step
    return sorted(found.items())


def score_manifest(
    model_dir: Path,
    processor_dir: Path,
    manifest: Path,
    num_levels: int,
    mode: str,
    max_new_tokens: int,
    batch_size: int,
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(image ids, scores, MOS) of one checkpoint on one split's manifest."""
    from aesthetic_llm.scoring.engine import LevelScorer

    rows = read_manifest(manifest)
    scorer = LevelScorer(model_dir, num_levels, processor_path=processor_dir)
    preds = []
    for start in range(0, len(rows), batch_size):
        images = open_images(rows[start : start + batch_size])
        preds += [p.score for p in scorer.predict(images, mode=mode, max_new_tokens=max_new_tokens)]
    return [r.image_id for r in rows], np.asarray(preds), np.asarray([r.mos for r in rows])


def val_srcc(model_dir: Path, processor_dir: Path, manifest: Path, **score_kw: Any) -> float | None:
    _, pred, mos = score_manifest(model_dir, processor_dir, manifest, **score_kw)
    return srcc(pred, mos)


def select_checkpoint(
    train_dir: Path, final_step: int, manifest: Path, out_csv: Path, eval_loss: dict[int, float], **score_kw: Any
) -> dict[str, Any]:
    """Score every candidate on val, write the curve, return the best (ties -> the earlier step)."""
    rows = []
    for step, path in candidates(train_dir, final_step):
        value = val_srcc(path, train_dir, manifest, **score_kw)
        rows.append(
            {
                "step": step,
                "val_srcc": value,
                "eval_loss": eval_loss.get(step, ""),
                "path": path.name,
            }
        )
        print(f"checkpoint step {step}: val SRCC {value}", flush=True)
    write_csv(out_csv, rows, ["step", "val_srcc", "eval_loss", "path"])
    scored = [r for r in rows if r["val_srcc"] is not None]
    best = max(scored, key=lambda r: (r["val_srcc"], -r["step"])) if scored else rows[-1]
    return {
        "selected_step": best["step"],
        "selected_val_srcc": best["val_srcc"],
        "final_step": final_step,
        "final_val_srcc": rows[-1]["val_srcc"] if rows[-1]["step"] == final_step else None,
        "selected_path": str(train_dir / best["path"]) if best["path"] != train_dir.name else str(train_dir),
    }


def promote(checkpoint: Path, train_dir: Path) -> None:
    """Make the chosen checkpoint's weights the stage's model (processor files stay from the final save)."""
    if checkpoint == train_dir:
        return
    for pattern in (
        "model*.safetensors",
        "adapter_model.safetensors",
        "config.json",
        "generation_config.json",
        "adapter_config.json",
        "model.safetensors.index.json",
    ):
        for f in checkpoint.glob(pattern):
            shutil.copy2(f, train_dir / f.name)


def drop_checkpoints(train_dir: Path) -> None:
    for p in train_dir.iterdir():
        if _CKPT.match(p.name) and p.is_dir():
            shutil.rmtree(p)
