"""The annotate stage: a CoT critique 'Analysis: … Rating Level: N' for every training image.

Backends: `offline` (the demo critic in critic.py, given each image's true level as the study gave
Qwen-VL-Plus the true score) and `api` (an OpenAI-compatible vision endpoint).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aesthetic_llm.critic import write_critique
from aesthetic_llm.data.manifest import ManifestRow, manifest_path, open_images, read_manifest
from aesthetic_llm.io_utils import write_json, write_jsonl
from aesthetic_llm.levels import mos_to_level
from aesthetic_llm.measure import measure
from aesthetic_llm.params import Params
from aesthetic_llm.prompts import PROMPT_VERSION

BACKENDS = ("offline", "api")


def annotate_offline(rows: list[ManifestRow], num_levels: int) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        (image,) = open_images([row])
        props = measure(image)
        level = mos_to_level(row.mos, num_levels)
        out.append(
            {
                "image_id": row.image_id,
                "path": row.path,
                "mos": row.mos,
                "level": level,
                "critique": write_critique(props, level, num_levels),
                "properties": props.as_dict(),
                "backend": "offline",
                "prompt_version": PROMPT_VERSION,
            }
        )
    return out


def annotate(params: Params) -> dict[str, int]:
    backend = params.str("annotate.backend", choices=BACKENDS)
    num_levels = params.int("levels.num_levels", lo=2)
    data_dir = Path(params.str("data.out_dir"))
    out_dir = Path(params.str("annotate.out_dir"))
    if backend == "api":
        from aesthetic_llm.annotate.api import annotate_params  # imports the openai client only when used

        manifests = {split: manifest_path(data_dir, split) for split in params.list("annotate.splits")}
        counts, api_summaries = annotate_params(params, manifests, out_dir)
        write_json(
            out_dir / "summary.json",
            {"backend": backend, "prompt_version": PROMPT_VERSION, "counts": counts, "api": api_summaries},
        )
        return counts
    counts = {}
    for split in params.list("annotate.splits"):
        records = annotate_offline(read_manifest(manifest_path(data_dir, split)), num_levels)
        write_jsonl(out_dir / f"{split}.jsonl", records)
        counts[split] = len(records)
    write_json(out_dir / "summary.json", {"backend": backend, "prompt_version": PROMPT_VERSION, "counts": counts})
    return counts
