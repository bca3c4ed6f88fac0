"""dvc.yaml stays honest: every stage lists its script, every package module the script imports
(transitively), and only params that exist in params.yaml."""

import ast
from pathlib import Path

import yaml

from .conftest import ROOT

PKG = "aesthetic_llm"


SRC = ROOT / "src"


def _module_file(dotted: str) -> str | None:
    """`aesthetic_llm.data.manifest` -> `src/aesthetic_llm/data/manifest.py`, when that module is a file."""
    path = SRC / Path(*dotted.split("."))
    return str(path.with_suffix(".py").relative_to(ROOT)) if path.with_suffix(".py").exists() else None


def _imports(path: Path) -> set[str]:
    """Package module files imported by a file, at any depth of the file (lazy imports included).

    Subpackage `__init__.py` files are empty (test below), so importing through them adds no file."""
    here = ".".join(path.relative_to(SRC).with_suffix("").parts[:-1]) if path.is_relative_to(SRC) else ""
    found: set[str | None] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = here.split(".")[: len(here.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            if base == PKG or base.startswith(PKG + "."):
                found.add(_module_file(base))
                found.update(_module_file(f"{base}.{a.name}") for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(_module_file(a.name) for a in node.names if a.name.startswith(PKG + "."))
    return {f for f in found if f}


def _closure(script: Path) -> set[str]:
    todo, seen = list(_imports(script)), set()
    while todo:
        mod = todo.pop()
        if mod not in seen:
            seen.add(mod)
            todo.extend(_imports(ROOT / mod))
    return seen


def test_subpackage_inits_are_empty():
    """A re-exporting `__init__.py` would put every sibling module into each stage's deps."""
    for init in (SRC / PKG).glob("*/__init__.py"):
        assert init.read_text().strip() == "", f"{init.relative_to(ROOT)} must stay empty"


def _stages() -> dict:
    """Every stage definition; a `foreach` stage (one per training seed) is checked through its template."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    return {name: s["do"] if "foreach" in s else s for name, s in stages.items()}


def test_training_stages_run_once_per_seed():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name in ("sft", "qalign_style", "dpo_data", "dpo", "score"):
        assert stages[name].get("foreach") == "${seeds}", name
        do = stages[name]["do"]
        assert do["cmd"].endswith("--seed ${item}"), name
        outs = [o if isinstance(o, str) else next(iter(o)) for o in do["outs"]]
        assert all("${item}" in o for o in outs), f"stage {name}: an output shared by every seed: {outs}"
        assert "seed" not in do["params"] or name == "dpo_data", f"stage {name}: reads the data seed"


# Files a stage runs by path in another environment (never imported), listed as deps by hand.
RUN_BY_PATH = {f"src/{PKG}/scoring/qalign_worker.py"}


def test_each_stage_lists_its_script_and_imported_modules():
    for name, stage in _stages().items():
        script = stage["cmd"].split()[1]
        deps = set(stage["deps"])
        assert script in deps, f"stage {name}: script {script} not in deps"
        needed = _closure(ROOT / script)
        assert needed <= deps, f"stage {name}: missing deps {sorted(needed - deps)}"
        # And no module it does not import: an extra dep would rerun the stage for nothing.
        listed = {d for d in deps if d.startswith(f"src/{PKG}/")} - RUN_BY_PATH
        assert listed <= needed, f"stage {name}: deps it does not import {sorted(listed - needed)}"


def _has(params: dict, dotted: str) -> bool:
    node = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def test_stage_params_exist():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for name, stage in _stages().items():
        for key in stage.get("params", []):
            assert _has(params, key), f"stage {name}: param {key} not in params.yaml"


def test_one_script_per_stage():
    scripts = [s["cmd"].split()[1] for s in _stages().values()]
    assert len(scripts) == len(set(scripts))
