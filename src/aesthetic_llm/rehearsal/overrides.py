"""The rehearsal's overrides file (configs/rehearsal.yaml): read it, fill its placeholders, apply it to params.yaml.

The file maps dotted params keys (`section.key`) to the value that replaces the paper profile's, each key line
with a `#` comment saying why. Applied to params.yaml's data with `profile: paper`, an override lands where the
paper profile reads that key: in `profiles.paper` when the overlay sets it, else in the top-level section; the
resolved paper params are then checked to hold exactly the override (a value that merged instead of replacing
would be caught there).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

from aesthetic_llm.errors import UserError
from aesthetic_llm.params import Params

PLACEHOLDER = re.compile(r"\{(\w+)\}")
_KEY_LINE = re.compile(r"^([A-Za-z_][\w.]*)\s*:")


def load_overrides(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """(dotted key -> value, dotted key -> its comment) from the overrides file; UserError on a bad file."""
    if not path.is_file():
        raise UserError(f"{path}: overrides file not found")
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: invalid YAML ({exc})") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise UserError(f"{path}: expected a mapping of dotted params keys to values")
    why: dict[str, str] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        m = _KEY_LINE.match(line)
        if m is None:
            continue
        comment = line.partition(" #")[2].strip()
        if not comment:
            raise UserError(f"{path}:{lineno}: {m.group(1)}: every override needs a one-line '# why' comment")
        why[m.group(1)] = comment
    missing = sorted(set(data) - set(why))
    if missing:
        raise UserError(f"{path}: {', '.join(missing)}: not one key per line")
    return data, why


def fill(value: Any, slots: dict[str, str]) -> Any:
    """`value` with every {name} in its strings replaced by slots[name]; UserError on an unknown name."""
    if isinstance(value, dict):
        return {k: fill(v, slots) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, slots) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        if m.group(1) not in slots:
            raise UserError(f"override value {value!r}: unknown placeholder {{{m.group(1)}}} (known: {sorted(slots)})")
        return slots[m.group(1)]

    return PLACEHOLDER.sub(sub, value)


def _has(node: Any, parts: list[str]) -> bool:
    for part in parts:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _set(node: dict[str, Any], parts: list[str], value: Any) -> None:
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise UserError(f"override {'.'.join(parts)}: {part} is not a section")
    node[parts[-1]] = copy.deepcopy(value)


def apply_overrides(raw: dict[str, Any], overrides: dict[str, Any], profile: str = "paper") -> dict[str, Any]:
    """params.yaml data (`raw`) with `profile` selected and `overrides` applied; checked against the result."""
    out = copy.deepcopy(raw)
    out["profile"] = profile
    overlay = out.setdefault("profiles", {}).setdefault(profile, {})
    for key, value in overrides.items():
        parts = key.split(".")
        if not _has(raw, parts) and not _has(overlay, parts):
            raise UserError(f"override {key}: no such key in params.yaml (a typo would silently do nothing)")
        _set(overlay if _has(overlay, parts) else out, parts, value)
    resolved = Params(out, profile=profile)
    for key, value in overrides.items():
        if resolved.get(key) != value:
            raise UserError(
                f"override {key}: the {profile} profile resolves it to {resolved.get(key)!r}, not {value!r}"
            )
    return out
