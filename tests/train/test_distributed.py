"""Scale-out and training options: LR defaults by finetuning type, LoRA/pref params, DeepSpeed JSONs, the
80 GB paper recipes, a real 2-process (gloo, CPU) distributed SFT step through `train_stage`, and one short
DPO run per LLaMA-Factory preference loss."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from aesthetic_llm.critic import write_critique
from aesthetic_llm.errors import UserError
from aesthetic_llm.experiments import crossfit
from aesthetic_llm.experiments.crossfit import crossfit_samples, source_folds
from aesthetic_llm.io_utils import read_json
from aesthetic_llm.measure import measure
from aesthetic_llm.params import Params
from aesthetic_llm.train import stage as train
from aesthetic_llm.train.datasets import (
    SFT_DATASET,
    SFT_VAL_DATASET,
    near_level_pairs,
    sft_records,
    write_dpo_dataset,
    write_sft_dataset,
)
from aesthetic_llm.train.settings import DEFAULT_LR, PREF_LOSSES, OnPolicySettings, TrainSettings
from aesthetic_llm.train.stage import effective_config, overrides_for, train_stage

from ..conftest import ROOT

DS_JSONS = sorted((ROOT / "llamafactory_configs/deepspeed").glob("*.json"))
BIG_RECIPES = sorted((ROOT / "llamafactory_configs/paper").glob("*/*.yaml"))


def _params(**stage: dict) -> Params:
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    data["model"]["name_or_path"] = str(ROOT / data["model"]["name_or_path"])  # tests run in other folders
    for name, values in stage.items():
        data[name].update(values)
    return Params(data, profile="demo")


@pytest.mark.parametrize("stage", ["sft", "dpo"])
@pytest.mark.parametrize("ft", ["full", "lora"])
def test_null_learning_rate_uses_the_finetuning_type_default(stage, ft):
    ov = overrides_for(
        TrainSettings.from_params(_params(**{stage: {"learning_rate": None, "finetuning_type": ft}}), stage),
        "m",
        "models/x",
        0,
    )
    assert ov["learning_rate"] == DEFAULT_LR[stage][ft]
    assert DEFAULT_LR["sft"] == {"full": 2e-5, "freeze": 2e-5, "lora": 1e-4}
    explicit = overrides_for(
        TrainSettings.from_params(_params(**{stage: {"learning_rate": 3e-4, "finetuning_type": ft}}), stage),
        "m",
        "models/x",
        0,
    )
    assert explicit["learning_rate"] == 3e-4


def test_lora_and_preference_params_reach_llamafactory():
    p = _params(
        sft={"finetuning_type": "lora", "lora_rank": 8, "lora_alpha": 16, "lora_target": ["q_proj", "v_proj"]},
        dpo={"ftx": 0.5, "loss": "simpo"},
    )
    ov = overrides_for(TrainSettings.from_params(p, "sft"), "m", "models/x", 0)
    assert (ov["lora_rank"], ov["lora_alpha"], ov["lora_target"]) == (8, 16, "q_proj,v_proj")
    assert ov["output_dir"].endswith("/adapter")
    full = overrides_for(TrainSettings.from_params(p, "dpo"), "m", "models/x", 0)
    assert "lora_rank" not in full and full["pref_ftx"] == 0.5 and full["pref_loss"] == "simpo"
    defaults = overrides_for(
        TrainSettings.from_params(_params(dpo={"finetuning_type": "lora"}), "dpo"), "m", "models/x", 0
    )
    assert (defaults["lora_rank"], defaults["lora_alpha"], defaults["lora_target"], defaults["pref_ftx"]) == (
        16,
        32,
        "all",
        0.5,  # params.yaml's dpo.ftx
    )
    with pytest.raises(UserError, match="dpo.loss"):
        overrides_for(TrainSettings.from_params(_params(dpo={"loss": "nca"}), "dpo"), "m", "models/x", 0)


def test_cli_overrides_keep_yaml_ambiguous_strings_strings():
    from omegaconf import OmegaConf

    ov = {"save_strategy": "no", "lora_target": "q_proj,v_proj", "x": "null", "beta": 0.1, "flag": False}
    argv = [f"{k}={train._cli_value(v)}" for k, v in ov.items()]
    assert OmegaConf.to_container(OmegaConf.from_cli(argv)) == ov


def test_pref_losses_match_the_installed_llamafactory():
    import typing

    from llamafactory.hparams.finetuning_args import FinetuningArguments

    hints = typing.get_type_hints(FinetuningArguments)
    assert set(typing.get_args(hints["pref_loss"])) == set(PREF_LOSSES)


@pytest.mark.parametrize("path", DS_JSONS, ids=lambda p: p.name)
def test_deepspeed_jsons_are_valid_zero_configs(path):
    from deepspeed.runtime.zero.config import DeepSpeedZeroConfig

    cfg = json.loads(path.read_text())
    assert "scheduler" not in cfg and "optimizer" not in cfg
    zero = {k: (1 if v == "auto" else v) for k, v in cfg["zero_optimization"].items()}  # HF fills "auto"
    assert DeepSpeedZeroConfig(**zero).stage == zero["stage"]
    assert cfg["bf16"]["enabled"] == "auto" and cfg["train_micro_batch_size_per_gpu"] == "auto"


def test_zero3_and_offload_configs_exist():
    names = {p.name for p in DS_JSONS}
    assert {"ds_z2_config.json", "ds_z3_config.json", "ds_z3_offload_config.json"} <= names
    off = json.loads((ROOT / "llamafactory_configs/deepspeed/ds_z3_offload_config.json").read_text())
    assert off["zero_optimization"]["offload_optimizer"]["device"] == "cpu"


@pytest.mark.parametrize("path", BIG_RECIPES, ids=lambda p: p.name)
def test_80gb_recipes_parse_and_use_zero3_full_bf16(path):
    from llamafactory.hparams.parser import _TRAIN_ARGS
    from transformers import HfArgumentParser

    cfg = yaml.safe_load(path.read_text())
    assert cfg["finetuning_type"] == "full" and cfg["bf16"] is True and cfg["gradient_checkpointing"] is True
    ds = json.loads((ROOT / cfg["deepspeed"]).read_text())
    assert ds["zero_optimization"]["stage"] == 3
    sections = [line[4:].strip() for line in path.read_text().splitlines() if line.startswith("### ")]
    assert sections[:5] == ["model", "method", "dataset", "output", "train"]
    ds_path = cfg.pop("deepspeed")
    cfg.update(bf16=False, use_cpu=True)
    HfArgumentParser(_TRAIN_ARGS).parse_dict(cfg, allow_extra_keys=False)
    p = _params(**{cfg["stage"]: {"config": str(path), "finetuning_type": "full", "learning_rate": None}})
    eff = effective_config(path, overrides_for(TrainSettings.from_params(p, cfg["stage"]), "m", "models/x", 0))
    assert eff["learning_rate"] == DEFAULT_LR[cfg["stage"]]["full"] and eff["deepspeed"] == ds_path


def test_worker_node_trains_only(tmp_path, monkeypatch):
    """NODE_RANK > 0: run llamafactory-cli (its share of the job) and leave outputs and reports to node 0."""
    calls = []
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NODE_RANK", "1")
    monkeypatch.setattr(train, "run_llamafactory", lambda *a: calls.append(a))
    (tmp_path / "models/sft").mkdir(parents=True)
    (tmp_path / "models/sft/keep").write_text("node 0's")
    p = _params(sft={"config": str(ROOT / "llamafactory_configs/demo/qwen2vl_full_sft.yaml")})
    out = train_stage(
        TrainSettings.from_params(p, "sft"),
        "models/base",
        seed=1,
        out_dir=Path("models/sft"),
        reports_dir=tmp_path / "reports",
    )
    assert out["node_rank"] == 1 and len(calls) == 1 and calls[0][0] == "train"
    assert (tmp_path / "models/sft/keep").exists() and not (tmp_path / "reports").exists()
    monkeypatch.setenv("NODE_RANK", "x")
    with pytest.raises(UserError, match="NODE_RANK"):
        train.node_rank()


_ABORT_LOG = """***** train metrics *****
  train_loss = 6.2
terminate called without an active exception
  rank      : 1 (local_rank: 1)
  exitcode  : -6 (pid: 2)  (SIGABRT)
Traceback (most recent call last):
subprocess.CalledProcessError: Command '['torchrun', ...]' returned non-zero exit status 1.
"""


def _failing_cli(tmp_path: Path, monkeypatch, log: str) -> None:
    """A stand-in llamafactory-cli (named fake: gloo's teardown race cannot be triggered on demand)
    that prints `log` and exits 1."""
    exe = tmp_path / "fake-llamafactory-cli"
    exe.write_text(f"#!/bin/sh\ncat <<'LOG'\n{log}LOG\nexit 1\n")
    exe.chmod(0o755)
    monkeypatch.setattr(train, "llamafactory_cli", lambda: str(exe))


def test_teardown_abort_after_all_outputs_is_a_warning(tmp_path, monkeypatch, capsys):
    _failing_cli(tmp_path, monkeypatch, _ABORT_LOG)
    out = tmp_path / "out"
    out.mkdir()
    for name in train.FINAL_OUTPUTS:
        (out / name).write_text("{}")
    train.run_llamafactory("train", Path("cfg.yaml"), {}, out / "llamafactory_train.log", out)
    assert "every output in" in capsys.readouterr().err
    assert "[aesthetic_llm] warning" in (out / "llamafactory_train.log").read_text()


@pytest.mark.parametrize("missing", ["all_results.json", "trainer_state.json"])
def test_teardown_abort_before_the_outputs_fails_with_the_root_cause(tmp_path, monkeypatch, capsys, missing):
    _failing_cli(tmp_path, monkeypatch, _ABORT_LOG + "x\n" * 20)
    out = tmp_path / "out"
    out.mkdir()
    for name in set(train.FINAL_OUTPUTS) - {missing}:
        (out / name).write_text("{}")
    with pytest.raises(UserError, match="failed \\(exit 1\\); full log"):
        train.run_llamafactory("train", Path("cfg.yaml"), {}, out / "llamafactory_train.log", out)
    err = capsys.readouterr().err
    # the rank's root cause, not only the launcher traceback the tail holds
    assert "exitcode  : -6" in err and "terminate called" in err


def test_failures_without_the_teardown_signature_still_fail(tmp_path, monkeypatch):
    _failing_cli(tmp_path, monkeypatch, _ABORT_LOG.replace(train.TEARDOWN_ABORT, "RuntimeError: boom"))
    out = tmp_path / "out"
    out.mkdir()
    for name in train.FINAL_OUTPUTS:
        (out / name).write_text("{}")
    with pytest.raises(UserError, match="failed"):
        train.run_llamafactory("train", Path("cfg.yaml"), {}, out / "llamafactory_train.log", out)
    # and without a train_dir (worker nodes, export) nothing is tolerated
    with pytest.raises(UserError, match="failed"):
        train.run_llamafactory("train", Path("cfg.yaml"), {}, tmp_path / "w.log")


# -- real runs on the tiny model (CPU) -----------------------------------------------------------------------


def _datasets(root: Path, n: int = 8) -> None:
    anns = []
    (root / "img").mkdir()
    for i in range(n):
        img = Image.fromarray((np.random.default_rng(i).random((56, 56, 3)) * 255).astype("uint8"))
        img.save(root / f"img/{i}.png")
        props, level = measure(img), 1 + i
        anns.append(
            {
                "image_id": str(i),
                "path": f"img/{i}.png",
                "level": level,
                "critique": write_critique(props, level, 10),
                "properties": props.as_dict(),
            }
        )
    write_sft_dataset(root / "sft", {SFT_DATASET: sft_records(anns, 10), SFT_VAL_DATASET: sft_records(anns[:2], 10)})
    write_dpo_dataset(root / "dpo", near_level_pairs(anns, 10, [1, 2], 1, 0))


@pytest.fixture()
def tiny_workspace(tmp_path, tiny_model_dir, monkeypatch):
    _datasets(tmp_path)
    monkeypatch.chdir(tmp_path)
    for var in ("FORCE_TORCHRUN", "NPROC_PER_NODE", "NNODES", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DISABLE_VERSION_CHECK", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    return tmp_path, tiny_model_dir


_SHORT = {"save_strategy": "no", "eval_strategy": "no", "logging_steps": 1, "image_max_pixels": 3136}


@pytest.mark.slow
def test_two_process_gloo_training_through_train_stage(tiny_workspace, monkeypatch):
    """FORCE_TORCHRUN=1 NPROC_PER_NODE=2: llamafactory-cli re-launches itself under torchrun; both ranks train."""
    root, model = tiny_workspace
    monkeypatch.setenv("FORCE_TORCHRUN", "1")
    monkeypatch.setenv("NPROC_PER_NODE", "2")
    p = _params(
        sft={
            "config": str(ROOT / "llamafactory_configs/demo/qwen2vl_full_sft.yaml"),
            "output_dir": "models/sft",
            "per_device_train_batch_size": 2,
            "select_checkpoint": False,
            "extra": {**_SHORT, "dataset_dir": "sft", "max_steps": 2, "ddp_backend": "gloo"},
        }
    )
    summary = train_stage(
        TrainSettings.from_params(p, "sft"),
        str(model),
        seed=42,
        out_dir=Path("models/sft"),
        reports_dir=root / "reports",
    )
    log = (root / "models/sft/llamafactory_train.log").read_text()
    assert "Initializing 2 distributed tasks" in log
    assert "Process rank: 0, world size: 2" in log and "Process rank: 1, world size: 2" in log
    # 8 samples, 2 per device: 2 steps cover one epoch only if both ranks consumed their half.
    assert "Total train batch size (w. parallel, distributed & accumulation) = 4" in log
    state = read_json(root / "models/sft/trainer_state.json")
    assert state["global_step"] == 2 and state["epoch"] == pytest.approx(1.0)
    assert summary["steps"] == 2 and (root / "models/sft/model.safetensors").exists()


@pytest.mark.slow
@pytest.mark.parametrize("loss", PREF_LOSSES)
def test_each_preference_loss_runs_through_llamafactory(tiny_workspace, loss):
    root, model = tiny_workspace
    p = _params(
        dpo={
            "config": str(ROOT / "llamafactory_configs/demo/qwen2vl_full_dpo.yaml"),
            "output_dir": "models/dpo",
            "loss": loss,
            "ftx": 0.1,
            "per_device_train_batch_size": 2,
            "select_checkpoint": False,
            "extra": {**_SHORT, "dataset_dir": "dpo", "max_steps": 1},
        }
    )
    summary = train_stage(
        TrainSettings.from_params(p, "dpo"),
        str(model),
        seed=42,
        out_dir=Path("models/dpo"),
        reports_dir=root / "reports",
    )
    cfg = yaml.safe_load((root / "reports/dpo_config.yaml").read_text())
    assert cfg["pref_loss"] == loss and cfg["pref_ftx"] == 0.1
    assert summary["steps"] == 1 and np.isfinite(summary["train_loss"])
    assert (root / "models/dpo/model.safetensors").exists()


@pytest.mark.slow
def test_crossfit_answers_every_photo_with_a_fold_model_that_never_saw_it(tiny_workspace, monkeypatch):
    root, model = tiny_workspace
    records = json.loads((root / "sft" / f"{SFT_DATASET}.json").read_text())
    anns = [
        {"image_id": r["image_id"], "path": r["images"][0], "critique": r["messages"][1]["content"]} for r in records
    ]
    p = _params(
        model={"name_or_path": str(model)},
        sft={
            "config": str(ROOT / "llamafactory_configs/demo/qwen2vl_full_sft.yaml"),
            "per_device_train_batch_size": 2,
            "extra": {**_SHORT, "max_steps": 1},
        },
        score={"max_new_tokens": 8, "batch_size": 4},
    )
    folds = source_folds(anns, 2, 0)
    two = replace(OnPolicySettings.from_params(p), samples=2)
    samples = crossfit_samples(p, anns, anns[:2], folds, root / "cf", two, 42)
    assert set(samples) == {a["image_id"] for a in anns} and all(len(s) == 2 for s in samples.values())
    for j, fold in enumerate(folds):
        trained_on = {r["image_id"] for r in json.loads((root / f"cf/fold{j}/data/{SFT_DATASET}.json").read_text())}
        answered = {
            json.loads(line)["image_id"] for line in (root / f"cf/fold{j}/samples.jsonl").read_text().splitlines()
        }
        assert answered == set(fold) and not trained_on & set(fold) and trained_on  # ids are their own sources here
        assert (root / f"cf/fold{j}/model/model.safetensors").exists()
    # a finished fold is reused; a changed recipe (samples per image) trains again
    monkeypatch.setattr(crossfit, "train_stage", lambda *a, **k: pytest.fail("retrained a finished fold"))
    assert crossfit_samples(p, anns, anns[:2], folds, root / "cf", two, 42) == samples
    monkeypatch.setattr(crossfit, "train_stage", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("retrain")))
    with pytest.raises(RuntimeError, match="retrain"):
        crossfit_samples(p, anns, anns[:2], folds, root / "cf", replace(two, samples=3), 42)
