"""Shared fixtures: a tiny model built once per session, small demo params, repo paths."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

TINY_BUILD = {
    "vocab_size": 512,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "mrope_section": [4, 6, 6],
    "vision_depth": 1,
    "vision_embed_dim": 32,
    "vision_num_heads": 2,
    "image_size": 56,
}


@pytest.fixture(scope="session")
def repo_params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def small_params(base: dict, out_dir: Path) -> dict:
    """The repo's params shrunk to seconds-scale sizes, writing under out_dir."""
    p = copy.deepcopy(base)
    p["model"]["build"] = dict(TINY_BUILD)
    p["data"].update(
        out_dir=str(out_dir / "prepared"),
        image_size=56,
        crops_per_source={"train": 3, "val": 2, "test": 6, "unseen": 2},
    )
    p["annotate"]["out_dir"] = str(out_dir / "annotations")
    return p


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from aesthetic_llm.model.tiny import build_tiny_model

    out = tmp_path_factory.mktemp("tiny_model")
    build_tiny_model(out, dict(TINY_BUILD), num_levels=10, seed=0)
    return out
