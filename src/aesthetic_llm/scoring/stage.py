"""The score stage: every model × eval split -> predictions CSV `image_id,model,split,pred,text_level,mos,…`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from aesthetic_llm.data.manifest import manifest_path, open_images, read_manifest
from aesthetic_llm.errors import UserError
from aesthetic_llm.io_utils import read_csv, write_csv
from aesthetic_llm.levels import level_to_mos
from aesthetic_llm.scoring.settings import ModelRow, ScoreSettings

PRED_FIELDS = ["image_id", "model", "split", "seed", "pred", "text_level", "mos", "probs"]


def score_all(settings: ScoreSettings, table: list[ModelRow], out: Path, seed: int | None) -> dict[str, Any]:
    """Score the models of `table` on every eval split into `out` (hard rows: the test images in the band)."""
    import torch

    from aesthetic_llm.scoring.engine import LevelScorer, scheme_by_name

    num_levels, samples, max_new, batch = (
        settings.num_levels,
        settings.samples,
        settings.max_new_tokens,
        settings.batch_size,
    )
    data_dir, splits = settings.data_dir, settings.splits
    hard_ids = {r["image_id"] for r in read_csv(manifest_path(data_dir, "hard"), required=("image_id",))}
    rows_out: list[dict[str, Any]] = []
    timing: dict[str, float] = {}
    for row in table:
        if not Path(row.path).exists() and settings.local_models:
            raise UserError(f"model {row.name}: {row.path} not found (run its stage first: dvc repro)")
        scorer = LevelScorer(row.path, num_levels, scheme=scheme_by_name(row.scheme, num_levels))
        # cot_sampled: each model's samples reproducible on their own, and different across training seeds
        torch.manual_seed(settings.sample_seed)
        t0 = time.perf_counter()
        for split in splits:
            manifest = read_manifest(manifest_path(data_dir, split))
            for start in range(0, len(manifest), batch):
                chunk = manifest[start : start + batch]
                preds = scorer.predict(open_images(chunk), row.mode, max_new, samples)
                for r, p in zip(chunk, preds, strict=True):
                    rec = {
                        "image_id": r.image_id,
                        "model": row.name,
                        "split": split,
                        "seed": "" if seed is None else seed,
                        "pred": repr(float(p.score)),
                        "text_level": "" if p.text_level is None else p.text_level,
                        "mos": r.mos_text,
                        "probs": json.dumps(p.probs),
                    }
                    rows_out.append(rec)
                    if split == "test" and r.image_id in hard_ids:
                        rows_out.append(dict(rec, split="hard"))
            print(f"scored {row.name} (seed {seed if seed is not None else '-'}) / {split}: {len(manifest)} images")
        timing[row.name] = round(time.perf_counter() - t0, 2)
    write_csv(out, rows_out, PRED_FIELDS)
    return {
        "rows": len(rows_out),
        "seconds": timing,
        "mode": settings.mode,
        "seed": seed,
        "models": [vars(r) for r in table],
    }


def text_level_mos(value: str, num_levels: int) -> float:
    return level_to_mos(int(value), num_levels) if value not in ("", None) else float("nan")
