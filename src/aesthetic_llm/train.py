"""Run a LLaMA-Factory training stage (`llamafactory-cli train cfg.yaml key=value …`) from params.yaml.

The YAML in llamafactory_configs/ holds the recipe; params.yaml supplies what experiments change
(passed as CLI overrides). The effective config and the training log are saved next to the results.
LoRA runs are merged (`llamafactory-cli export`) so every later stage loads a plain checkpoint.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from .errors import UserError
from .io_utils import atomic_write_text, read_json, write_csv, write_json
from .params import Params
from .selection import drop_checkpoints, promote, select_checkpoint

LOG_FIELDS = [
    "step",
    "epoch",
    "loss",
    "learning_rate",
    "grad_norm",
    "eval_loss",
    "rewards/accuracies",
    "rewards/margins",
    "rewards/chosen",
    "rewards/rejected",
]


def overrides_for(params: Params, stage: str, model_path: str) -> dict[str, Any]:
    """LLaMA-Factory keys that params.yaml controls for `stage` (sft | dpo)."""
    ft = params.str(f"{stage}.finetuning_type", choices=("full", "lora", "freeze"))
    out_dir = params.str(f"{stage}.output_dir")
    ov: dict[str, Any] = {
        "model_name_or_path": model_path,
        "template": params.str("model.template"),
        "finetuning_type": ft,
        "output_dir": f"{out_dir}/adapter" if ft == "lora" else out_dir,
        "learning_rate": params.num(f"{stage}.learning_rate", lo=0.0),
        "num_train_epochs": params.num(f"{stage}.num_train_epochs", lo=0.0),
        "per_device_train_batch_size": params.int(f"{stage}.per_device_train_batch_size", lo=1),
        "gradient_accumulation_steps": params.int(f"{stage}.gradient_accumulation_steps", lo=1),
        "seed": params.int("seed"),
    }
    if stage == "dpo":
        ov["pref_beta"] = params.num("dpo.beta", lo=0.0)
        ov["pref_loss"] = params.str("dpo.loss", choices=("sigmoid", "hinge", "ipo", "kto_pair", "orpo", "simpo"))
    extra = params.get(f"{stage}.extra", {}) or {}
    if not isinstance(extra, dict):
        raise UserError(f"{params.source}: {stage}.extra: expected a mapping of LLaMA-Factory keys")
    ov.update(extra)
    return ov


def effective_config(config_path: Path, overrides: dict[str, Any]) -> dict[str, Any]:
    if not config_path.exists():
        raise UserError(f"{config_path}: LLaMA-Factory config not found")
    cfg = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    cfg.update(overrides)
    return cfg


def _cli_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def llamafactory_cli() -> str:
    exe = Path(sys.executable).with_name("llamafactory-cli")
    return str(exe) if exe.exists() else "llamafactory-cli"


def run_llamafactory(verb: str, config: Path, overrides: dict[str, Any], log_path: Path) -> None:
    cmd = [llamafactory_cli(), verb, str(config)] + [f"{k}={_cli_value(v)}" for k, v in overrides.items()]
    env = dict(os.environ)
    env.setdefault("DISABLE_VERSION_CHECK", "0")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    print("+", " ".join(cmd), flush=True)
    with log_path.open("w", encoding="utf-8") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, check=False)
    if proc.returncode != 0:
        tail = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-15:]
        sys.stderr.write("\n".join(tail) + "\n")
        raise UserError(f"llamafactory-cli {verb} failed (exit {proc.returncode}); full log: {log_path}")


def export_log(output_dir: Path, csv_path: Path) -> dict[str, Any]:
    """trainer_state.json's log_history -> a CSV for `dvc plots` and a small summary dict."""
    state = read_json(output_dir / "trainer_state.json")
    rows, summary = [], {}
    for entry in state.get("log_history", []):
        if "train_runtime" in entry:
            summary = {k: entry[k] for k in ("train_loss", "train_runtime", "train_samples_per_second") if k in entry}
            continue
        row = {"step": entry.get("step"), "epoch": entry.get("epoch")}
        row.update({k: entry[k] for k in LOG_FIELDS[2:] if k in entry})
        rows.append(row)
    fields = [f for f in LOG_FIELDS if any(f in r for r in rows)]
    write_csv(csv_path, rows, fields)
    summary["steps"] = state.get("global_step")
    evals = [r["eval_loss"] for r in rows if "eval_loss" in r]
    if evals:
        summary["final_eval_loss"] = evals[-1]
    accs = [r["rewards/accuracies"] for r in rows if "rewards/accuracies" in r]
    if accs:
        summary["final_reward_accuracy"] = accs[-1]
    return summary


def choose_checkpoint(
    params: Params, name: str, train_dir: Path, summary: dict[str, Any], reports_dir: Path, mode: str
) -> dict[str, Any]:
    """Score every saved checkpoint on val (the downstream metric) and promote the best to the stage's model."""
    import csv

    from .manifest import manifest_path

    with (reports_dir / f"{name}_log.csv").open() as fh:
        eval_loss = {int(r["step"]): float(r["eval_loss"]) for r in csv.DictReader(fh) if r.get("eval_loss")}
    sel = select_checkpoint(
        train_dir,
        int(summary["steps"]),
        manifest_path(params.str("data.out_dir"), "val"),
        reports_dir / f"{name}_selection.csv",
        eval_loss,
        num_levels=params.int("levels.num_levels", lo=2),
        mode=mode,
        max_new_tokens=params.int("score.max_new_tokens", lo=1),
        batch_size=params.int("score.batch_size", lo=1),
    )
    promote(Path(sel.pop("selected_path")), train_dir)
    return sel


def train_stage(
    params: Params,
    stage: str,
    model_path: str,
    reports_dir: Path = Path("reports/train"),
    name: str | None = None,
    dataset: dict[str, str] | None = None,
    score_mode: str | None = None,
) -> dict[str, Any]:
    """Train `stage` (sft | dpo) with its recipe and params. A variant (`name`, e.g. the no-CoT
    ablation) reuses the recipe and hyper-parameters with other datasets, its own output dir and reports."""
    name = name or stage
    config = Path(params.str(f"{stage}.config"))
    overrides = overrides_for(params, stage, model_path)
    out_dir = Path(params.str(f"{name}.output_dir"))
    overrides["output_dir"] = f"{out_dir}/adapter" if overrides["finetuning_type"] == "lora" else str(out_dir)
    overrides.update(dataset or {})
    if out_dir.exists():
        shutil.rmtree(out_dir)
    cfg = effective_config(config, overrides)
    atomic_write_text(reports_dir / f"{name}_config.yaml", yaml.safe_dump(cfg, sort_keys=False))
    run_llamafactory("train", config, overrides, out_dir / "llamafactory_train.log")
    train_dir = Path(overrides["output_dir"])
    summary = export_log(train_dir, reports_dir / f"{name}_log.csv")
    if params.bool(f"{stage}.select_checkpoint", False):
        mode = score_mode or params.str("score.mode", choices=("cot", "direct"))
        summary.update(choose_checkpoint(params, name, train_dir, summary, reports_dir, mode))
    drop_checkpoints(train_dir)
    if overrides["finetuning_type"] == "lora":
        merge = {
            "model_name_or_path": model_path,
            "adapter_name_or_path": str(train_dir),
            "template": overrides["template"],
            "finetuning_type": "lora",
            "export_dir": str(out_dir),
        }
        merge_cfg = reports_dir / f"{name}_export.yaml"
        atomic_write_text(merge_cfg, yaml.safe_dump(merge, sort_keys=False))
        run_llamafactory("export", merge_cfg, {}, out_dir / "llamafactory_export.log")
    summary.update({"stage": name, "config": str(config), "finetuning_type": overrides["finetuning_type"]})
    write_json(reports_dir / f"{name}_metrics.json", summary)
    return summary
