import subprocess
import sys

import pytest
import yaml

from aesthetic_llm.errors import UserError
from aesthetic_llm.params import Params, set_profile
from aesthetic_llm.preflight import check

from .conftest import ROOT


def test_repo_params_pass_preflight_for_demo():
    check(Params.load(ROOT / "params.yaml", profile="demo"))


def test_paper_overlay_overrides_only_what_it_names(repo_params):
    demo = Params(repo_params, profile="demo")
    paper = Params(repo_params, profile="paper")
    assert paper.str("model.name_or_path") == "Qwen/Qwen2-VL-7B-Instruct"
    assert paper.str("sft.finetuning_type") == "lora"
    assert paper.num("data.hard_pair_max_delta") == 0.2 < demo.num("data.hard_pair_max_delta")  # AVA vs 1-10 uniform
    assert paper.num("dpo.beta") == demo.num("dpo.beta")  # not overridden
    assert paper.str("sft.output_dir") == demo.str("sft.output_dir")


def test_paper_profile_without_data_is_a_clear_error(repo_params):
    with pytest.raises(UserError, match=r"data\.ava_root: .* does not exist"):
        check(Params(repo_params, profile="paper"))


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (("dpo", "beta"), "abc", r"dpo\.beta: expected a number, got 'abc'"),
        (("dpo", "beta"), "nan", r"dpo\.beta: expected a number, got 'nan'"),
        (("sft", "per_device_train_batch_size"), 0, r"per_device_train_batch_size: expected an integer >= 1"),
        (("score", "mode"), "fast", r"score\.mode: expected one of cot, cot_sampled, direct"),
        (("data", "hard_band"), [7, 4], r"data\.hard_band"),
        (("dpo", "sft_holdout"), 1.0, r"dpo\.sft_holdout: must be below 1"),
        (("dpo", "sft_holdout"), -0.1, r"dpo\.sft_holdout: expected a number >= 0"),
    ],
)
def test_malformed_values_name_the_field(repo_params, key, value, message):
    bad = yaml.safe_load(yaml.safe_dump(repo_params))
    bad[key[0]][key[1]] = value
    with pytest.raises(UserError, match=message):
        check(Params(bad, profile="demo"))


def test_exponent_without_a_dot_is_a_number(repo_params):
    """`dvc exp run -S dpo.learning_rate=2e-5` writes '2e-05', which YAML 1.1 reads as a string."""
    raw = yaml.safe_load(yaml.safe_dump(repo_params))
    raw["dpo"]["learning_rate"] = yaml.safe_load("x: 2e-05")["x"]
    assert raw["dpo"]["learning_rate"] == "2e-05"
    assert Params(raw, profile="demo").num("dpo.learning_rate", lo=0.0) == pytest.approx(2e-5)


def test_unknown_profile_is_rejected(repo_params):
    with pytest.raises(UserError, match="unknown profile 'gpu'"):
        Params(repo_params, profile="gpu")


def test_set_profile_edits_only_the_profile_line(tmp_path):
    path = tmp_path / "params.yaml"
    original = (ROOT / "params.yaml").read_text()
    path.write_text(original)
    assert set_profile(path, "paper") is True
    changed = path.read_text()
    assert changed.replace("profile: paper", "profile: demo", 1) == original
    assert set_profile(path, "paper") is False


def test_preflight_script_one_line_error_and_exit_code(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text((ROOT / "params.yaml").read_text().replace("  beta: 0.1", "  beta: [0.1"))
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts/preflight.py"), "--params", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}:") and "invalid YAML" in lines[0]
