"""The score stage: every model × eval split -> predictions CSV `image_id,model,split,pred,text_level,mos,…`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from PIL import Image

from .errors import UserError
from .io_utils import read_csv, write_csv
from .levels import level_to_mos
from .params import Params
from .prepare import manifest_path

PRED_FIELDS = ["image_id", "model", "split", "pred", "text_level", "mos", "probs"]


def model_table(params: Params) -> dict[str, str]:
    """The study's rows: the base model zero-shot, after SFT, after DPO."""
    return {
        "zero_shot": params.str("model.name_or_path"),
        "sft": params.str("sft.output_dir"),
        "dpo": params.str("dpo.output_dir"),
    }


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
    from .scoring import LevelScorer

    num_levels = params.int("levels.num_levels", lo=2)
    mode = params.str("score.mode", choices=("cot", "direct"))
    max_new = params.int("score.max_new_tokens", lo=1)
    batch = params.int("score.batch_size", lo=1)
    data_dir = Path(params.str("data.out_dir"))
    splits = params.list("score.splits")
    hard_ids = {r["image_id"] for r in read_csv(manifest_path(data_dir, "hard"), required=("image_id",))}
    rows_out: list[dict[str, Any]] = []
    timing: dict[str, float] = {}
    for name, path in model_table(params).items():
        if not Path(path).exists() and params.profile == "demo":
            raise UserError(f"model {name}: {path} not found (run its stage first: dvc repro)")
        scorer = LevelScorer(path, num_levels)
        t0 = time.perf_counter()
        for split in splits:
            src = manifest_path(data_dir, split)
            manifest = read_csv(src, required=("image_id", "path", "mos"))
            for start in range(0, len(manifest), batch):
                chunk = manifest[start : start + batch]
                preds = scorer.predict(load_images(chunk, src), mode=mode, max_new_tokens=max_new)
                for r, p in zip(chunk, preds, strict=True):
                    row = {
                        "image_id": r["image_id"],
                        "model": name,
                        "split": split,
                        "pred": round(p.score, 5),
                        "text_level": "" if p.text_level is None else p.text_level,
                        "mos": r["mos"],
                        "probs": json.dumps(p.probs),
                    }
                    rows_out.append(row)
                    if split == "test" and r["image_id"] in hard_ids:
                        rows_out.append(dict(row, split="hard"))
            print(f"scored {name} / {split}: {len(manifest)} images", flush=True)
        timing[name] = round(time.perf_counter() - t0, 2)
    write_csv(out, rows_out, PRED_FIELDS)
    return {"rows": len(rows_out), "seconds": timing, "mode": mode}


def text_level_mos(value: str, num_levels: int) -> float:
    return level_to_mos(int(value), num_levels) if value not in ("", None) else float("nan")
