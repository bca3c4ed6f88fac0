"""The LLaMA-Factory recipes: every key is one LLaMA-Factory knows, the layout is the examples' one,
and no DeepSpeed JSON carries a scheduler/optimizer block (it would silently override lr_scheduler_type)."""

import json

import pytest
import yaml

from aesthetic_llm.params import Params
from aesthetic_llm.train.settings import TrainSettings
from aesthetic_llm.train.stage import effective_config, overrides_for

from ..conftest import ROOT

CONFIGS = sorted((ROOT / "llamafactory_configs").glob("*/*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_key_is_a_llamafactory_argument(path):
    from llamafactory.hparams.parser import _TRAIN_ARGS
    from transformers import HfArgumentParser

    cfg = yaml.safe_load(path.read_text())
    # Parse as a CPU run here: bf16 and DeepSpeed are validated against hardware, not names.
    cfg.update(bf16=False, use_cpu=True)
    cfg.pop("deepspeed", None)
    HfArgumentParser(_TRAIN_ARGS).parse_dict(cfg, allow_extra_keys=False)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_recipe_sections_in_examples_order(path):
    sections = [line[4:].strip() for line in path.read_text().splitlines() if line.startswith("### ")]
    assert sections[:5] == ["model", "method", "dataset", "output", "train"], sections


def test_demo_recipes_run_on_cpu_and_paper_recipes_on_gpus():
    for path in CONFIGS:
        cfg = yaml.safe_load(path.read_text())
        if path.parent.name == "demo":
            assert cfg["use_cpu"] is True and cfg["bf16"] is False and "deepspeed" not in cfg
        else:
            assert cfg["bf16"] is True and cfg["finetuning_type"] == "lora" and (ROOT / cfg["deepspeed"]).exists()


@pytest.mark.parametrize("path", sorted((ROOT / "llamafactory_configs/deepspeed").glob("*.json")), ids=lambda p: p.name)
def test_deepspeed_configs_leave_scheduler_and_optimizer_to_llamafactory(path):
    cfg = json.loads(path.read_text())
    assert "scheduler" not in cfg and "optimizer" not in cfg


@pytest.mark.parametrize("profile", ["demo", "paper"])
def test_params_overrides_reach_the_effective_config(repo_params, profile):
    p = Params(repo_params, profile=profile)
    cfg = effective_config(
        ROOT / p.str("dpo.config"),
        overrides_for(TrainSettings.from_params(p, "dpo"), p.str("sft.output_dir"), p.str("dpo.output_dir"), 42),
    )
    assert cfg["pref_beta"] == p.num("dpo.beta") and cfg["pref_loss"] == p.str("dpo.loss")
    assert cfg["learning_rate"] == p.num("dpo.learning_rate") and cfg["stage"] == "dpo"
    expected_out = p.str("dpo.output_dir") + ("/adapter" if p.str("dpo.finetuning_type") == "lora" else "")
    assert cfg["output_dir"] == expected_out
