"""dvc.yaml stays honest: every stage lists its script, every package module the script imports
(transitively), and only params that exist in params.yaml."""

import ast
from pathlib import Path

import yaml

from .conftest import ROOT

PKG = "aesthetic_llm"


def _imports(path: Path) -> set[str]:
    """Package modules imported by a file, at any depth of the file (lazy imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level and node.module:
                found.add(node.module.split(".")[0])
            elif node.level:
                found.update(a.name for a in node.names)
            elif node.module and node.module.startswith(PKG + "."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith(PKG + "."))
    return {m for m in found if (ROOT / "src" / PKG / f"{m}.py").exists()}


def _closure(script: Path) -> set[str]:
    todo, seen = list(_imports(script)), set()
    while todo:
        mod = todo.pop()
        if mod not in seen:
            seen.add(mod)
            todo.extend(_imports(ROOT / "src" / PKG / f"{mod}.py"))
    return seen


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


def test_each_stage_lists_its_script_and_imported_modules():
    for name, stage in _stages().items():
        script = stage["cmd"].split()[1]
        deps = set(stage["deps"])
        assert script in deps, f"stage {name}: script {script} not in deps"
        needed = {f"src/{PKG}/{m}.py" for m in _closure(ROOT / script)}
        assert needed <= deps, f"stage {name}: missing deps {sorted(needed - deps)}"
        # And no module it does not import: an extra dep would rerun the stage for nothing.
        listed = {d for d in deps if d.startswith(f"src/{PKG}/")}
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
