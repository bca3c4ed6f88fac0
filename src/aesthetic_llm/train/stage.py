"""Run a LLaMA-Factory training stage (`llamafactory-cli train cfg.yaml key=value …`) from params.yaml.

The YAML in llamafactory_configs/ holds the recipe; params.yaml supplies what experiments change
(passed as CLI overrides). The effective config and the training log are saved next to the results.
LoRA runs are merged (`llamafactory-cli export`) so every later stage loads a plain checkpoint.
A recipe with a `deepspeed` JSON has it checked (check_deepspeed_config) and is launched under torchrun,
which LLaMA-Factory requires for DeepSpeed even on one device (launch_env).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from aesthetic_llm.errors import UserError
from aesthetic_llm.io_utils import atomic_write_text, read_json, write_csv, write_json
from aesthetic_llm.numerics import fingerprint
from aesthetic_llm.train.selection import drop_checkpoints, promote, select_checkpoint
from aesthetic_llm.train.settings import SelectionSettings, TrainSettings

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


def node_rank() -> int:
    """This machine's rank in a multi-node launch (NODE_RANK, as torchrun and LLaMA-Factory read it)."""
    raw = os.environ.get("NODE_RANK", "0") or "0"
    if not raw.isdigit():
        raise UserError(f"NODE_RANK={raw!r}: expected a non-negative integer")
    return int(raw)


def overrides_for(settings: TrainSettings, model_path: str, out_dir: str | Path, seed: int) -> dict[str, Any]:
    """LLaMA-Factory keys that params.yaml controls for a stage, training into `out_dir` with `seed`."""
    ov: dict[str, Any] = {
        "model_name_or_path": model_path,
        "template": settings.template,
        "finetuning_type": settings.finetuning_type,
        "output_dir": f"{out_dir}/adapter" if settings.lora else str(out_dir),
        "learning_rate": settings.learning_rate,
        "num_train_epochs": settings.num_train_epochs,
        "per_device_train_batch_size": settings.per_device_train_batch_size,
        "gradient_accumulation_steps": settings.gradient_accumulation_steps,
        "seed": seed,
    }
    if settings.lora:
        ov.update(lora_rank=settings.lora.rank, lora_alpha=settings.lora.alpha, lora_target=settings.lora.target)
    if settings.preference:
        pref = settings.preference
        ov.update(pref_beta=pref.beta, pref_loss=pref.loss, pref_ftx=pref.ftx)
    ov.update(settings.extra)
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
    if isinstance(v, str) and " " not in v:
        # llamafactory-cli reads key=value with OmegaConf (YAML 1.1): quote strings it would not keep as
        # strings, e.g. save_strategy=no (-> False) or null.
        try:
            kept = yaml.safe_load(v) == v
        except yaml.YAMLError:
            kept = False
        if not kept:
            return f"'{v}'" if "'" not in v else f'"{v}"'
    return str(v)


def llamafactory_cli() -> str:
    exe = Path(sys.executable).with_name("llamafactory-cli")
    return str(exe) if exe.exists() else "llamafactory-cli"


# A rank that reaches `destroy_process_group` while another still saves can die in gloo's C++ teardown
# (std::terminate on a joinable thread); torchrun then reports the whole run as failed although training
# finished and rank 0 wrote every output. Seen ~1 in 6 two-process CPU runs with torch 2.14 + gloo.
TEARDOWN_ABORT = "terminate called without an active exception"
# What LLaMA-Factory's trainer writes last, in this order, on rank 0 (after the model).
FINAL_OUTPUTS = ("trainer_state.json", "all_results.json")


def finished_despite_teardown_abort(log_text: str, train_dir: Path) -> bool:
    """True when a failed `llamafactory-cli train` only failed after training: the log ends training
    ("train metrics") and shows the gloo teardown abort, and rank 0's final outputs exist and parse."""
    if TEARDOWN_ABORT not in log_text or "***** train metrics *****" not in log_text:
        return False
    for name in FINAL_OUTPUTS:
        try:
            read_json(train_dir / name)
        except (OSError, UserError):
            return False
    return True


def failure_excerpt(log_text: str, n_tail: int = 8, n_errors: int = 8) -> str:
    """The lines that say why a run failed: torchrun puts each rank's root cause above its own
    launcher traceback, so the plain tail often shows only the launcher."""
    lines = log_text.strip().splitlines()
    keys = ("Error", "error:", "Exception", "terminate called", "exitcode", "Signal ", "Killed")
    errors = [ln for ln in lines[:-n_tail] if any(k in ln for k in keys)][:n_errors]
    return "\n".join(errors + (["..."] if errors else []) + lines[-n_tail:])


def check_deepspeed_config(path: str | Path) -> dict[str, Any]:
    """Load a recipe's DeepSpeed JSON and check it as DeepSpeed will: its `zero_optimization` block through
    DeepSpeedZeroConfig ("auto" values, which the HF integration fills in, checked as 1), and no `scheduler` or
    `optimizer` block (either silently overrides LLaMA-Factory's lr_scheduler_type / optimizer). Returns
    {"config": path, "zero_stage": N}; UserError naming the file otherwise."""
    path = Path(path)
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: DeepSpeed config not found (the recipe's `deepspeed` key)") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
    if not isinstance(cfg, dict):
        raise UserError(f"{path}: expected a JSON object")
    for block in ("scheduler", "optimizer"):
        if block in cfg:
            raise UserError(
                f"{path}: has a {block!r} block, which silently overrides LLaMA-Factory's "
                f"{'lr_scheduler_type' if block == 'scheduler' else 'optimizer'}: remove it"
            )
    zero = cfg.get("zero_optimization", {})
    if not isinstance(zero, dict):
        raise UserError(f"{path}: zero_optimization: expected an object")
    from deepspeed.runtime.zero.config import DeepSpeedZeroConfig
    from pydantic import ValidationError

    try:
        stage = DeepSpeedZeroConfig(**{k: (1 if v == "auto" else v) for k, v in zero.items()}).stage
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first.get("loc", ())) or "zero_optimization"
        raise UserError(f"{path}: zero_optimization.{where}: {first.get('msg', exc)}") from None
    return {"config": str(path), "zero_stage": int(stage)}


def launch_env(cfg: dict[str, Any], environ: dict[str, str], device_count: int | None = None) -> dict[str, Any]:
    """How `llamafactory-cli train` is launched for the effective config `cfg`: the environment changes and the
    checked DeepSpeed config. LLaMA-Factory refuses DeepSpeed outside torchrun ("Please use FORCE_TORCHRUN=1"),
    and only starts torchrun by itself on more than one GPU: a DeepSpeed recipe sets FORCE_TORCHRUN=1, and on a
    machine without GPUs NPROC_PER_NODE=1 (LLaMA-Factory would ask torchrun for 0 processes there)."""
    if not cfg.get("deepspeed"):
        return {"env": {}, "deepspeed": None}
    ds = check_deepspeed_config(cfg["deepspeed"])
    env: dict[str, str] = {}
    if not environ.get("FORCE_TORCHRUN"):
        env["FORCE_TORCHRUN"] = "1"
    if not environ.get("NPROC_PER_NODE"):
        if device_count is None:
            import torch

            device_count = torch.cuda.device_count()
        if device_count == 0:
            env["NPROC_PER_NODE"] = "1"
    return {"env": env, "deepspeed": ds}


def run_llamafactory(
    verb: str, config: Path, overrides: dict[str, Any], log_path: Path, train_dir: Path | None = None
) -> dict[str, Any]:
    """Run `llamafactory-cli verb config key=value …`, logging to `log_path`. With `train_dir`
    (a fresh output dir of this run), a distributed run that failed only in process-group teardown
    after writing every output is accepted with a warning (see TEARDOWN_ABORT). Returns how it was
    launched (`launch_env`: the environment it added, the checked DeepSpeed config)."""
    cmd = [llamafactory_cli(), verb, str(config)] + [f"{k}={_cli_value(v)}" for k, v in overrides.items()]
    env = dict(os.environ)
    env.setdefault("DISABLE_VERSION_CHECK", "0")
    launch: dict[str, Any] = {"env": {}, "deepspeed": None}
    if verb == "train" and Path(config).is_file():  # a missing recipe: llamafactory-cli says so itself
        launch = launch_env(effective_config(config, overrides), env)
        env.update(launch["env"])
    # Distributed runs (FORCE_TORCHRUN=1 / NPROC_PER_NODE / NNODES …) make llamafactory-cli exec `torchrun`
    # by name: resolve it (and anything else) from this interpreter's environment first.
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    print("+", " ".join(cmd), flush=True)
    with log_path.open("w", encoding="utf-8") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, check=False)
    if proc.returncode == 0:
        return launch
    text = log_path.read_text(encoding="utf-8", errors="replace")
    if train_dir is not None and finished_despite_teardown_abort(text, train_dir):
        msg = (
            f"warning: llamafactory-cli {verb} exited {proc.returncode} after training finished: a rank aborted "
            f"in process-group teardown ({TEARDOWN_ABORT!r}); every output in {train_dir} was written, "
            "continuing"
        )
        print(msg, file=sys.stderr, flush=True)
        with log_path.open("a", encoding="utf-8") as log:
            log.write(f"\n[aesthetic_llm] {msg}\n")
        return launch
    sys.stderr.write(failure_excerpt(text) + "\n")
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
    sel: SelectionSettings, name: str, train_dir: Path, summary: dict[str, Any], reports_dir: Path
) -> dict[str, Any]:
    """Score every saved checkpoint on val (the downstream metric) and promote the best to the stage's model."""
    with (reports_dir / f"{name}_log.csv").open() as fh:
        eval_loss = {int(r["step"]): float(r["eval_loss"]) for r in csv.DictReader(fh) if r.get("eval_loss")}
    chosen = select_checkpoint(
        train_dir,
        int(summary["steps"]),
        sel.val_manifest,
        reports_dir / f"{name}_selection.csv",
        eval_loss,
        num_levels=sel.num_levels,
        mode=sel.mode,
        max_new_tokens=sel.max_new_tokens,
        batch_size=sel.batch_size,
    )
    promote(Path(chosen.pop("selected_path")), train_dir)
    return chosen


def train_stage(
    settings: TrainSettings,
    model_path: str | Path,
    *,
    seed: int,
    out_dir: Path,
    reports_dir: Path,
    name: str | None = None,
    dataset: dict[str, str] | None = None,
    selection: SelectionSettings | None = None,
    keep_checkpoints: bool = False,
) -> dict[str, Any]:
    """Train a stage (sft | dpo) with its recipe and settings into `out_dir` with training seed `seed`. A
    variant (`name`, e.g. the no-CoT ablation) reuses the recipe and hyper-parameters with other datasets
    and its own reports. With `selection`, every saved checkpoint is scored on val and the best becomes the
    model; without, the last. `keep_checkpoints` leaves every epoch's checkpoint in place (for studies)."""
    name = name or settings.stage
    config = settings.config
    overrides = overrides_for(settings, str(model_path), out_dir, seed)
    overrides.update(dataset or {})
    rank = node_rank()
    if rank > 0:
        # A worker node of a multi-node run: it trains its share; node 0 saves, selects, merges and reports.
        log = Path("runs") / f"{name}_node{rank}_train.log"
        run_llamafactory("train", config, overrides, log)
        return {"stage": name, "node_rank": rank, "log": str(log)}
    if out_dir.exists():
        shutil.rmtree(out_dir)
    cfg = effective_config(config, overrides)
    atomic_write_text(reports_dir / f"{name}_config.yaml", yaml.safe_dump(cfg, sort_keys=False))
    train_dir = Path(overrides["output_dir"])
    launch = run_llamafactory("train", config, overrides, out_dir / "llamafactory_train.log", train_dir)
    summary = export_log(train_dir, reports_dir / f"{name}_log.csv")
    if selection is not None:
        summary.update(choose_checkpoint(selection, name, train_dir, summary, reports_dir))
    else:  # the stage's output still says which checkpoint became the model: the last one, not scored here
        final_loss = summary.get("final_eval_loss")
        row = {"step": int(summary["steps"]), "val_srcc": None, "eval_loss": final_loss, "path": str(train_dir)}
        write_csv(reports_dir / f"{name}_selection.csv", [row], ["step", "val_srcc", "eval_loss", "path"])
        summary.update(selected_step=int(summary["steps"]), selection="off: last checkpoint")
    if not keep_checkpoints:
        drop_checkpoints(train_dir)
    if overrides["finetuning_type"] == "lora":
        merge = {
            "model_name_or_path": str(model_path),
            "adapter_name_or_path": str(train_dir),
            "template": overrides["template"],
            "finetuning_type": "lora",
            "export_dir": str(out_dir),
        }
        merge_cfg = reports_dir / f"{name}_export.yaml"
        atomic_write_text(merge_cfg, yaml.safe_dump(merge, sort_keys=False))
        run_llamafactory("export", merge_cfg, {}, out_dir / "llamafactory_export.log")
    summary.update(
        stage=name,
        seed=seed,
        config=str(config),
        finetuning_type=overrides["finetuning_type"],
        launch=launch,
        environment=fingerprint(),
    )
    write_json(reports_dir / f"{name}_metrics.json", summary)
    return summary
