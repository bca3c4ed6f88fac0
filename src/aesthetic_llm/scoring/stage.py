"""The score stage: every model × eval split -> predictions CSV `image_id,model,split,pred,text_level,mos,…`."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from aesthetic_llm.data.manifest import manifest_path
from aesthetic_llm.errors import UserError
from aesthetic_llm.io_utils import read_csv, write_csv
from aesthetic_llm.levels import SCORE_MODES, level_to_mos
from aesthetic_llm.params import Params
from aesthetic_llm.paths import seed_dir

PRED_FIELDS = ["image_id", "model", "split", "seed", "pred", "text_level", "mos", "probs"]
TRAINED = ("qalign_style", "sft", "dpo")  # trained here once per seed; zero_shot is the base as it is


@dataclass(frozen=True)
class ModelRow:
    name: str
    path: str
    scheme: str  # levels | qalign5
    mode: str  # cot | cot_sampled | direct


def model_table(params: Params, seed: int | None) -> list[ModelRow]:
    """The rows one score stage scores: the base zero-shot (seed None) or one seed's trained models (the no-CoT
    ablation, SFT, DPO); plus Q-Align's method on the models `score.qalign_method_models` names."""
    mode = params.str("score.mode", choices=SCORE_MODES)
    every = ("zero_shot", *TRAINED)
    if seed is None:
        paths = {"zero_shot": params.str("model.name_or_path")}
    else:
        paths = {name: str(seed_dir(params.str(f"{name}.output_dir"), seed)) for name in TRAINED}
    rows = [
        ModelRow(name, path, "levels", "direct" if name == "qalign_style" else mode) for name, path in paths.items()
    ]
    for name in params.list("score.qalign_method_models", []):
        if name not in every:
            raise UserError(
                f"{params.source}: score.qalign_method_models: unknown model {name!r} (one of {', '.join(every)})"
            )
        if name in paths:
            rows.append(ModelRow(f"{name}_qalign5", paths[name], "qalign5", "direct"))
    return rows


def load_images(rows: list[dict[str, str]], source: Path, first_line: int = 2) -> list[Image.Image]:
    """The images of manifest `rows` (a batch whose first row is line `first_line` of `source`)."""
    images = []
    for lineno, r in enumerate(rows, first_line):
        try:
            with Image.open(r["path"]) as im:
                images.append(im.convert("RGB"))
        except (FileNotFoundError, OSError) as exc:
            raise UserError(f"{source}:{lineno}: cannot read image {r['path']} ({exc.__class__.__name__})") from None
    return images


def score_all(params: Params, out: Path, seed: int | None) -> dict[str, Any]:
    """Score `model_table(params, seed)` on every eval split into `out` (hard rows: the test images in the band)."""
    import torch

    from aesthetic_llm.scoring.engine import LevelScorer, scheme_by_name

    num_levels = params.int("levels.num_levels", lo=2)
    mode = params.str("score.mode", choices=SCORE_MODES)
    samples = params.int("score.samples", lo=1)  # cot_sampled only
    max_new = params.int("score.max_new_tokens", lo=1)
    batch = params.int("score.batch_size", lo=1)
    data_dir = Path(params.str("data.out_dir"))
    splits = params.list("score.splits")
    hard_ids = {r["image_id"] for r in read_csv(manifest_path(data_dir, "hard"), required=("image_id",))}
    rows_out: list[dict[str, Any]] = []
    timing: dict[str, float] = {}
    table = model_table(params, seed)
    for row in table:
        if not Path(row.path).exists() and params.profile == "demo":
            raise UserError(f"model {row.name}: {row.path} not found (run its stage first: dvc repro)")
        scorer = LevelScorer(row.path, num_levels, scheme=scheme_by_name(row.scheme, num_levels))
        # cot_sampled: each model's samples reproducible on their own, and different across training seeds
        torch.manual_seed(params.int("seed") if seed is None else seed)
        t0 = time.perf_counter()
        for split in splits:
            src = manifest_path(data_dir, split)
            manifest = read_csv(src, required=("image_id", "path", "mos"))
            for start in range(0, len(manifest), batch):
                chunk = manifest[start : start + batch]
                preds = scorer.predict(load_images(chunk, src, first_line=start + 2), row.mode, max_new, samples)
                for r, p in zip(chunk, preds, strict=True):
                    rec = {
                        "image_id": r["image_id"],
                        "model": row.name,
                        "split": split,
                        "seed": "" if seed is None else seed,
                        "pred": repr(float(p.score)),
                        "text_level": "" if p.text_level is None else p.text_level,
                        "mos": r["mos"],
                        "probs": json.dumps(p.probs),
                    }
                    rows_out.append(rec)
                    if split == "test" and r["image_id"] in hard_ids:
                        rows_out.append(dict(rec, split="hard"))
            print(f"scored {row.name} (seed {seed if seed is not None else '-'}) / {split}: {len(manifest)} images")
        timing[row.name] = round(time.perf_counter() - t0, 2)
    write_csv(out, rows_out, PRED_FIELDS)
    return {"rows": len(rows_out), "seconds": timing, "mode": mode, "seed": seed, "models": [vars(r) for r in table]}


def text_level_mos(value: str, num_levels: int) -> float:
    return level_to_mos(int(value), num_levels) if value not in ("", None) else float("nan")
