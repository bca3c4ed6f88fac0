"""The data stage: per-split manifests (`image_id,path,mos,split,…`), the hard set and hard pairs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aesthetic_llm.data.demo import prepare_demo
from aesthetic_llm.params import Params

DATASETS = ("demo", "ava")


def prepare(params: Params) -> dict[str, Any]:
    out_dir = Path(params.str("data.out_dir"))
    dataset = params.str("data.dataset", choices=DATASETS)
    if dataset == "demo":
        return prepare_demo(params, out_dir)
    from aesthetic_llm.data.ava import prepare_paper  # AVA (+ AADB as unseen), from disk or downloaded

    return prepare_paper(params, out_dir)
