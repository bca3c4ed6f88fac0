"""`make rehearse`: the paper profile end to end on CPU — the real `dvc repro` on a workspace under rehearsal/.

What this machine cannot have is stood in for, and only that, as configs/rehearsal.yaml lists (printed at the
start and recorded in rehearsal/reports/metrics.json): generated AVA/AADB roots with damaged rows and images
(standin_data), the local OpenAI-compatible server as the API critic (fault_server, critic style, with faults),
the tiny Qwen2-VL as the base, fp32, a stand-in published Q-Align checkpoint (qalign_standin), one seed.

The workspace is built like the end-to-end test's: a copy of src, scripts, llamafactory_configs, pretrained,
dvc.yaml and requirements-qalign.lock, `git init`, `dvc init`, params.yaml = the repo's params.yaml with
profile paper and the overrides. The repo's own outputs and params.yaml are never written. The dummy API key
reaches the stages through the environment only; every output file is scanned for it at the end.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from aesthetic_llm.errors import UserError
from aesthetic_llm.io_utils import atomic_write_text, read_json, write_json
from aesthetic_llm.rehearsal.fault_server import FaultConfig, FaultServer
from aesthetic_llm.rehearsal.overrides import apply_overrides, fill, load_overrides
from aesthetic_llm.rehearsal.qalign_standin import build_standin
from aesthetic_llm.rehearsal.standin_data import make_roots

COPIED_DIRS = ("src", "scripts", "llamafactory_configs", "pretrained")
COPIED_FILES = ("dvc.yaml", "requirements-qalign.lock")
KEY_ENV = "REHEARSAL_API_KEY"  # must equal annotate.api.key_env in the overrides
# The critic stand-in's faults: some rate limits, server errors and answers that fail validation (seeded, so the
# same image meets the same faults in every run); retried within the paper's annotate.api limits.
FAULTS = {"p_429": 0.1, "p_500": 0.05, "p_malformed": 0.1, "retry_after": "0.05", "seed": 0}
COLLECTED = {  # workspace path -> name under rehearsal/reports
    "reports/metrics.json": "metrics.json",
    "reports/report.md": "report.md",
    "reports/params_used.yaml": "params_used.yaml",
    "reports/published_qalign_predictions.csv": "published_qalign_predictions.csv",
    "data/prepared/stats.json": "stats.json",
    "data/annotations/summary.json": "annotate_summary.json",
    "data/prepared/hard_pairs.csv": "hard_pairs.csv",
    "reports/predictions": "predictions",
    "reports/train": "train",
    "reports/figures": "figures",
}


def build_workspace(repo: Path, ws: Path, params: dict[str, Any]) -> Path:
    """A fresh DVC workspace at `ws` holding the pipeline's code and `params` as params.yaml."""
    if ws.exists():
        shutil.rmtree(ws)
    ws.mkdir(parents=True)
    for name in COPIED_DIRS:
        shutil.copytree(repo / name, ws / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in COPIED_FILES:
        shutil.copy(repo / name, ws / name)
    atomic_write_text(ws / "params.yaml", yaml.safe_dump(params, sort_keys=False))
    for cmd in (["git", "init", "-q"], [tool("dvc"), "init", "-q"]):
        subprocess.run(cmd, cwd=ws, check=True, capture_output=True, env=stage_env(None))
    return ws


def tool(name: str) -> str:
    """An executable of this interpreter's environment (dvc, llamafactory-cli), else from PATH."""
    exe = Path(sys.executable).with_name(name)
    return str(exe) if exe.exists() else name


def stage_env(api_key: str | None) -> dict[str, str]:
    """The stages' environment: this interpreter's bin first, offline hub, the dummy key (environment only)."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(DVC_NO_ANALYTICS="1", PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false", DS_BUILD_OPS="0")
    env.update(HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1")
    env.pop(KEY_ENV, None)
    if api_key is not None:
        env[KEY_ENV] = api_key
    return env


def run_logged(cmd: list[str], cwd: Path, env: dict[str, str], log: Path) -> None:
    """Run `cmd`, echoing its output and appending it to `log`; UserError naming the log when it fails."""
    print("+", " ".join(cmd), flush=True)
    with log.open("a", encoding="utf-8") as fh:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            fh.write(line)
        if proc.wait() != 0:
            raise UserError(f"rehearsal: {' '.join(cmd[:2])} failed (exit {proc.returncode}); log: {log}")


def print_overrides(path: Path, overrides: dict[str, Any], why: dict[str, str]) -> None:
    print(f"rehearsal: paper profile with the stand-ins of {path} (everything else is the paper's):")
    for key, value in overrides.items():
        print(f"  {key} = {json.dumps(value)}    # {why[key]}")
    sys.stdout.flush()


def files_containing(root: Path, needle: str) -> list[Path]:
    """Every file under `root` whose bytes contain `needle`."""
    data = needle.encode()
    return [p for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink() and data in p.read_bytes()]


def collect(ws: Path, reports: Path, record: dict[str, Any]) -> None:
    """Copy the run's outputs to `reports`; metrics.json and report.md get the rehearsal record."""
    if reports.exists():
        shutil.rmtree(reports)
    reports.mkdir(parents=True)
    for src, name in COLLECTED.items():
        if (ws / src).is_dir():
            shutil.copytree(ws / src, reports / name)
        elif (ws / src).exists():
            shutil.copy(ws / src, reports / name)
    metrics = read_json(reports / "metrics.json")
    if metrics.get("profile") != "paper":
        raise UserError(f"rehearsal: {ws / 'reports/metrics.json'}: profile {metrics.get('profile')!r}, not paper")
    metrics["rehearsal"] = record
    write_json(reports / "metrics.json", metrics)
    lines = [f"> **Rehearsal** of the paper profile on CPU with stand-ins ({record['overrides_file']}):", ">"]
    lines += [f"> - `{k}` = `{json.dumps(v)}` — {record['why'][k]}" for k, v in record["overrides"].items()]
    text = (reports / "report.md").read_text(encoding="utf-8")
    atomic_write_text(reports / "report.md", "\n".join(lines) + "\n\n" + text)


def rehearse(repo: Path, out: Path, overrides_path: Path) -> dict[str, Any]:
    """Run the rehearsal into `out` (inputs/, workspace/, reports/, dvc_repro.log); returns its record."""
    t0 = time.perf_counter()
    repo, out = repo.resolve(), out.resolve()
    overrides, why = load_overrides(overrides_path)
    for sub in ("inputs", "workspace", "reports", "dvc_repro.log"):  # every run starts from nothing
        if (out / sub).is_dir():
            shutil.rmtree(out / sub)
        else:
            (out / sub).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    inputs = out / "inputs"
    roots = make_roots(inputs)
    write_json(inputs / "planted.json", roots)
    build_standin(inputs / "qalign_standin")
    api_key = os.environ.get(KEY_ENV) or f"rehearsal-{secrets.token_hex(16)}"
    raw = yaml.safe_load((repo / "params.yaml").read_text(encoding="utf-8"))
    log = out / "dvc_repro.log"
    with FaultServer(FaultConfig(api_key=api_key, critic_style=True, **FAULTS)) as srv:
        resolved = fill(overrides, {"inputs": str(inputs), "server": srv.url, "python": sys.executable})
        if resolved.get("annotate.api.key_env") != KEY_ENV:
            raise UserError(f"{overrides_path}: annotate.api.key_env must be {KEY_ENV} (the dummy key's variable)")
        print_overrides(overrides_path, resolved, why)
        ws = build_workspace(repo, out / "workspace", apply_overrides(raw, resolved))
        env = stage_env(api_key)
        run_logged([tool("python"), "scripts/preflight.py", "--profile", "paper"], ws, env, log)
        run_logged([tool("dvc"), "repro"], ws, env, log)
        server = {"requests": srv.total, "faults": dict(srv.faults)}
    record = {
        "overrides_file": str(overrides_path),
        "overrides": resolved,
        "why": why,
        "critic_server": {**server, "injected": {k: v for k, v in FAULTS.items() if k.startswith("p_")}},
        "planted_problems": len(roots["planted"]),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    collect(ws, out / "reports", record)
    leaked = files_containing(out, api_key)
    if leaked:
        raise UserError(f"rehearsal: the dummy API key was written to {', '.join(map(str, leaked[:5]))}")
    print(f"rehearsal: done in {record['seconds']} s; reports in {out / 'reports'}")
    return record
