"""The score stage: every model × eval split -> predictions CSV `image_id,model,split,pred,text_level,mos,…`."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from .errors import UserError
from .io_utils import read_csv, write_csv
from .levels import SCORE_MODES, level_to_mos
from .manifest import manifest_path
from .params import Params

PRED_FIELDS = ["image_id", "model", "split", "pred", "text_level", "mos", "probs"]


@dataclass(frozen=True)
class ModelRow:
    name: str
    path: str
    scheme: str  # levels | qalign5
    mode: str  # cot | cot_sampled | direct


def model_table(params: Params) -> list[ModelRow]:
    """The study's rows (base zero-shot, SFT, DPO), the no-CoT ablation, and Q-Align's method on chosen models."""
    mode = params.str("score.mode", choices=SCORE_MODES)
    paths = {
        "zero_shot": params.str("model.name_or_path"),
        "qalign_style": params.str("qalign_style.output_dir"),
        "sft": params.str("sft.output_dir"),
        "dpo": params.str("dpo.output_dir"),
    }
    rows = [
        ModelRow(name, path, "levels", "direct" if name == "qalign_style" else mode) for name, path in paths.items()
    ]
    for name in params.list("score.qalign_method_models", []):
        if name not in paths:
            raise UserError(
                f"{params.source}: score.qalign_method_models: unknown model {name!r} (one of {', '.join(paths)})"
            )
        rows.append(ModelRow(f"{name}_qalign5", paths[name], "qalign5", "direct"))
    return rows


def load_images(rows: list[dict[str, str]], source: Path) -> list[Image.Image]:
    images = []
    for lineno, r in enumerate(rows, 2):
        try:
            with Image.open(r["path"]) as im:
                images.append(im.convert("RGB"))
        except (FileNotFoundError, OSError) as exc:
            raise UserError(f"{source}:{lineno}: cannot read image {r['path']} ({exc.__class__.__name__})") from None
    return images


def score_all(params: Params, out: Path) -> dict[str, Any]:
    from .scoring import LevelScorer, scheme_by_name

    num_levels = params.int("levels.num_levels", lo=2)
    import torch

    mode = params.str("score.mode", choices=SCORE_MODES)
    samples = params.int("score.samples", 8, lo=1)  # cot_sampled only
    max_new = params.int("score.max_new_tokens", lo=1)
    batch = params.int("score.batch_size", lo=1)
    data_dir = Path(params.str("data.out_dir"))
    splits = params.list("score.splits")
    hard_ids = {r["image_id"] for r in read_csv(manifest_path(data_dir, "hard"), required=("image_id",))}
    rows_out: list[dict[str, Any]] = []
    timing: dict[str, float] = {}
    for row in model_table(params):
        name, path = row.name, row.path
        if not Path(path).exists() and params.profile == "demo":
            raise UserError(f"model {name}: {path} not found (run its stage first: dvc repro)")
        scorer = LevelScorer(path, num_levels, scheme=scheme_by_name(row.scheme, num_levels))
        torch.manual_seed(params.int("seed"))  # cot_sampled: each model's samples reproducible on their own
        t0 = time.perf_counter()
        for split in splits:
            src = manifest_path(data_dir, split)
            manifest = read_csv(src, required=("image_id", "path", "mos"))
            for start in range(0, len(manifest), batch):
                chunk = manifest[start : start + batch]
                preds = scorer.predict(load_images(chunk, src), row.mode, max_new, samples)
                for r, p in zip(chunk, preds, strict=True):
                    rec = {
                        "image_id": r["image_id"],
                        "model": name,
                        "split": split,
                        "pred": round(p.score, 5),
                        "text_level": "" if p.text_level is None else p.text_level,
                        "mos": r["mos"],
                        "probs": json.dumps(p.probs),
                    }
                    rows_out.append(rec)
                    if split == "test" and r["image_id"] in hard_ids:
                        rows_out.append(dict(rec, split="hard"))
            print(f"scored {name} / {split}: {len(manifest)} images", flush=True)
        timing[name] = round(time.perf_counter() - t0, 2)
    write_csv(out, rows_out, PRED_FIELDS)
    return {"rows": len(rows_out), "seconds": timing, "mode": mode, "models": [vars(r) for r in model_table(params)]}


def text_level_mos(value: str, num_levels: int) -> float:
    return level_to_mos(int(value), num_levels) if value not in ("", None) else float("nan")
