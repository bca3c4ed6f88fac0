"""Shared fixtures: a tiny model built once per session, small demo params, repo paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from aesthetic_llm.params import SMALL_OVERLAY, shrunk

ROOT = Path(__file__).resolve().parents[1]

SMALL = yaml.safe_load((ROOT / SMALL_OVERLAY).read_text())
TINY_BUILD = SMALL["model"]["build"]


@pytest.fixture(scope="session")
def repo_params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def small_params(base: dict, out_dir: Path) -> dict:
    """The repo's params at configs/small.yaml's sizes, writing under out_dir."""
    p = shrunk(base, ROOT / SMALL_OVERLAY)
    p["data"]["out_dir"] = str(out_dir / "prepared")
    p["annotate"]["out_dir"] = str(out_dir / "annotations")
    return p


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from aesthetic_llm.model.tiny import build_tiny_model

    out = tmp_path_factory.mktemp("tiny_model")
    build_tiny_model(out, dict(TINY_BUILD), num_levels=10, seed=0)
    return out


def _covered(key: str, listed: list[str]) -> bool:
    return any(key == x or key.startswith(x + ".") for x in listed)


def _has(tree: dict, dotted: str) -> bool:
    for part in dotted.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return False
        tree = tree[part]
    return True


def param_read_problems(ws: Path, log: Path) -> list[str]:
    """What a DVC workspace's stages read (the READS_LOG lines) against what dvc.yaml lists for them: a read
    key neither it nor a section above is listed for (for a profile overlay holding it, the overlay key too)
    would not rerun the stage when it changes; a key read that params.yaml lacks cannot be listed at all."""
    stages = yaml.safe_load((ws / "dvc.yaml").read_text())["stages"]
    params = yaml.safe_load((ws / "params.yaml").read_text())
    overlay = f"profiles.{params.get('profile', 'demo')}"
    listed = {}
    for name, stage in stages.items():
        stage = stage.get("do", stage)
        listed[stage["cmd"].split()[1]] = (name, stage.get("params", []))
    problems = []
    for line in map(json.loads, log.read_text().splitlines()):
        if line["script"] not in listed:  # not a stage (preflight before `dvc repro`): nothing to rerun
            continue
        name, keys = listed[line["script"]]
        for key in line["read"]:
            if not _covered(key, keys):
                problems.append(f"stage {name} reads {key}: not in its dvc.yaml params")
            elif _has(params, f"{overlay}.{key}") and not _covered(f"{overlay}.{key}", keys):
                problems.append(f"stage {name} reads {key}: its {overlay} value is not in its dvc.yaml params")
        problems += [f"stage {name} reads {key}, which params.yaml lacks" for key in line["absent"]]
    return problems
