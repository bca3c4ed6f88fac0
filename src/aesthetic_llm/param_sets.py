"""`--set key.path=value` for the scripts that run beside the pipeline (rescore, crossfit_dpo).

Kept out of params.py, which every DVC stage depends on.
"""

from __future__ import annotations

import yaml

from .errors import UserError


def with_overrides(data: dict, sets: list[str]) -> dict:
    """Apply `a.b=value` (value parsed as YAML) to the active profile: the top level on demo, its overlay otherwise."""
    profile = data.get("profile", "demo")
    for item in sets:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UserError(f"--set {item!r}: expected key.path=value")
        node = data if profile == "demo" else data.setdefault("profiles", {}).setdefault(profile, {})
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"--set {item!r}: {part} is not a section")
        node[leaf] = yaml.safe_load(raw)
    return data
