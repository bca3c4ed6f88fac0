"""params.yaml: the active profile (`profile`) overlaid on the demo defaults, with typed, named access.

Layout: top-level sections hold the demo profile (the embedded default); `profiles.<name>.<section>`
overrides them for another profile. DVC tracks `profile`, a stage's sections and their overlays, so
changing one value reruns only the stages that read it.
"""

from __future__ import annotations

import argparse
import atexit
import copy
import os
from pathlib import Path
from typing import Any

import yaml

from aesthetic_llm.errors import UserError

PROFILES = ("demo", "paper")
DEFAULT_PARAMS = "params.yaml"
SMALL_OVERLAY = "configs/small.yaml"
READS_LOG = "AESTHETIC_PARAMS_READS"  # set to a file path: each stage appends the param keys it read


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def shrunk(data: dict[str, Any], overlay: str | Path = SMALL_OVERLAY) -> dict[str, Any]:
    """params.yaml's mapping at the seconds-scale sizes of `configs/small.yaml` (tests, `bench --small`)."""
    return deep_merge(data, yaml.safe_load(Path(overlay).read_text(encoding="utf-8")))


class Params:
    """Resolved parameters for one profile; getters validate types and name the offending field."""

    def __init__(self, data: dict[str, Any], source: str = DEFAULT_PARAMS, profile: str | None = None) -> None:
        self.source = source
        raw_profile = profile if profile is not None else data.get("profile", "demo")
        if raw_profile not in PROFILES:
            raise UserError(
                f"{source}: profile: unknown profile {raw_profile!r} (expected one of {', '.join(PROFILES)})"
            )
        self.profile: str = raw_profile
        overlays = data.get("profiles") or {}
        if not isinstance(overlays, dict):
            raise UserError(f"{source}: profiles: expected a mapping of profile name to overrides")
        base = {k: v for k, v in data.items() if k != "profiles"}
        self.data = deep_merge(base, overlays.get(self.profile) or {}) if self.profile != "demo" else base
        self.data["profile"] = self.profile
        self.reads: dict[str, bool] = {}  # every dotted key a getter asked for -> whether params.yaml has it

    @classmethod
    def load(cls, path: str | Path = DEFAULT_PARAMS, profile: str | None = None) -> Params:
        path = Path(path)
        if not path.exists():
            raise UserError(f"{path}: file not found (run from the repository root)")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f":{mark.line + 1}" if mark is not None else ""
            raise UserError(f"{path}{where}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
        if not isinstance(data, dict):
            raise UserError(f"{path}: expected a mapping at the top level")
        params = cls(data, source=str(path), profile=profile)
        if os.environ.get(READS_LOG):
            atexit.register(log_reads, params, Path(os.environ[READS_LOG]))
        return params

    # -- typed access ---------------------------------------------------------------------------
    def get(self, dotted: str, default: Any = ...) -> Any:
        node: Any = self.data
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                self.reads[dotted] = False
                if default is not ...:
                    return default
                raise UserError(f"{self.source}: {dotted}: missing (profile {self.profile})")
            node = node[part]
        self.reads[dotted] = True
        return node

    def _bad(self, dotted: str, expected: str, value: Any) -> UserError:
        return UserError(f"{self.source}: {dotted}: expected {expected}, got {value!r}")

    def num(self, dotted: str, default: Any = ..., lo: float | None = None, hi: float | None = None) -> float:
        value = self.get(dotted, default)
        if isinstance(value, str):  # YAML 1.1 reads 2e-5 (no dot), as `dvc exp run -S x=2e-5` writes it, as a string
            try:
                value = float(value) if value.strip().lower() not in ("nan", "inf", "-inf", "+inf") else value
            except ValueError:
                raise self._bad(dotted, "a number", value) from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self._bad(dotted, "a number", value)
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            bounds = (
                f"in [{lo}, {hi}]" if lo is not None and hi is not None else f">= {lo}" if hi is None else f"<= {hi}"
            )
            raise self._bad(dotted, f"a number {bounds}", value)
        return float(value)

    def int(self, dotted: str, default: Any = ..., lo: int | None = None) -> int:
        value = self.get(dotted, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._bad(dotted, "an integer", value)
        if lo is not None and value < lo:
            raise self._bad(dotted, f"an integer >= {lo}", value)
        return value

    def str(self, dotted: str, default: Any = ..., choices: tuple[str, ...] | None = None) -> str:
        value = self.get(dotted, default)
        if not isinstance(value, str):
            raise self._bad(dotted, "a string", value)
        if choices is not None and value not in choices:
            raise self._bad(dotted, f"one of {', '.join(choices)}", value)
        return value

    def bool(self, dotted: str, default: Any = ...) -> bool:
        value = self.get(dotted, default)
        if not isinstance(value, bool):
            raise self._bad(dotted, "true or false", value)
        return value

    def list(self, dotted: str, default: Any = ...) -> list[Any]:
        value = self.get(dotted, default)
        if not isinstance(value, list):
            raise self._bad(dotted, "a list", value)
        return value

    def section(self, dotted: str) -> dict[str, Any]:
        value = self.get(dotted)
        if not isinstance(value, dict):
            raise self._bad(dotted, "a mapping", value)
        return copy.deepcopy(value)


def stage_args(
    description: str | None, *, out: str | None = None, seeded: bool = False
) -> tuple[Params, argparse.Namespace]:
    """The command line every stage script shares: `--params` (and `--out` when the stage has one, `--seed`
    for a stage run once per training seed). The process's CPU numerics are pinned from `compute` here,
    before any tensor is computed."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--params", default=DEFAULT_PARAMS)
    if out is not None:
        ap.add_argument("--out", default=out)
    if seeded:
        ap.add_argument("--seed", type=int, required=True, help="training seed (one of `seeds`)")
    args = ap.parse_args()
    params = Params.load(args.params)
    pin_numerics(params)
    return params, args


def log_reads(params: Params, log: Path) -> None:
    """Append the keys this stage read to `log` (one JSON line per process), so a test can check that
    dvc.yaml lists every param a stage reads: an unlisted one would not rerun the stage when it changes."""
    import json
    import sys

    line = {"script": Path(sys.argv[0]).as_posix(), "read": sorted(k for k, v in params.reads.items() if v)}
    line["absent"] = sorted(k for k, v in params.reads.items() if not v)
    with log.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(line) + "\n")


def pin_numerics(params: Params) -> dict[str, str]:
    """Pin this process's CPU kernels and threads as `compute` says (numerics.py)."""
    from aesthetic_llm.numerics import CPU_NUMERICS, pin

    pinned = pin(params.str("compute.cpu_numerics", choices=CPU_NUMERICS), params.int("compute.threads", lo=1))
    # Every process is pinned alike; only stages whose outputs depend on float kernels list `compute` in dvc.yaml.
    params.reads.pop("compute.cpu_numerics")
    params.reads.pop("compute.threads")
    return pinned


def training_seeds(params: Params) -> list[int]:
    """`seeds`: the training seeds, distinct integers, at least one."""
    seeds = params.list("seeds")
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) for s in seeds) or len(set(seeds)) < len(seeds):
        raise UserError(f"{params.source}: seeds: expected a list of distinct integers, got {seeds!r}")
    return seeds


def set_seeds(path: str | Path, count: int) -> list[int]:
    """Rewrite params.yaml's top-level `seeds:` list to `count` consecutive seeds from its first one
    (editing only that line, comments kept); returns the new list."""
    import re

    from aesthetic_llm.io_utils import atomic_write_text

    if count < 1:
        raise UserError(f"SEEDS={count}: expected a number of training seeds >= 1")
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    match = re.search(r"^seeds:[ \t]*(\[[^\]\n]*\])", text, re.MULTILINE)
    if match is None:
        raise UserError(f"{path}: no top-level one-line 'seeds: [...]' list")
    current = yaml.safe_load(match.group(1)) or [42]
    seeds = [int(current[0]) + i for i in range(count)]
    atomic_write_text(path, text[: match.start(1)] + str(seeds) + text[match.end(1) :])
    return seeds


def set_profile(path: str | Path, profile: str) -> bool:
    """Point params.yaml's top-level `profile:` at `profile`, editing only that line; True if it changed."""
    import re

    if profile not in PROFILES:
        raise UserError(f"PROFILE={profile}: unknown profile (expected one of {', '.join(PROFILES)})")
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    pattern = re.compile(r"^profile:[ \t]*([^\s#]+)", re.MULTILINE)
    match = pattern.search(text)
    if match is None:
        raise UserError(f"{path}: no top-level 'profile:' line")
    if match.group(1) == profile:
        return False
    from aesthetic_llm.io_utils import atomic_write_text

    atomic_write_text(path, text[: match.start(1)] + profile + text[match.end(1) :])
    return True
