"""scripts/compare_experiments.py on real `dvc exp run` experiments, and the Makefile's compare / train-multi.

The experiments run in a scratch git+dvc repo whose single stage writes reports/metrics.json in the evaluate
stage's format from the params (seconds), not the whole pipeline (minutes per variant)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ..conftest import ROOT

FAKE_EVALUATE = """
import json, os, yaml
p = yaml.safe_load(open("params.yaml"))["dpo"]
score = {"near_level": 0.70, "far_level": 0.50, "cross_image": 0.60}[p["pair_strategy"]]
score += {"sigmoid": 0.05, "ipo": 0.0}[p["loss"]]
m = {"models": {"dpo": {
    "val": {"n": 64, "srcc": score, "srcc_ci": [score - 0.1, score + 0.1]},
    "test": {"n": 96, "srcc": score - 0.02, "srcc_ci": [score - 0.12, score + 0.08],
             "srcc_diff_vs_sft": score - 0.6, "srcc_diff_vs_sft_ci": [score - 0.7, score - 0.5]},
    "hard": {"n": 30, "pair_acc": score + 0.1, "n_pairs": 50,
             "pair_acc_diff_vs_sft": score - 0.5, "pair_acc_diff_vs_sft_ci": [score - 0.55, score - 0.45]},
}}}
os.makedirs("reports/train", exist_ok=True)
json.dump(m, open("reports/metrics.json", "w"))
# validation loss that disagrees with SRCC: the lowest loss belongs to the worst scorer
json.dump({"train_loss": score / 2, "final_eval_loss": score}, open("reports/train/dpo_metrics.json", "w"))
"""


def _env() -> dict[str, str]:
    env = dict(os.environ, DVC_NO_ANALYTICS="1", PYTHONPATH=str(ROOT / "src"))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    for k, v in (("NAME", "test"), ("EMAIL", "test@example.com")):
        env[f"GIT_AUTHOR_{k}"] = env[f"GIT_COMMITTER_{k}"] = v
    return env


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{cmd}: {proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc


def _script():
    from aesthetic_llm.experiments import compare

    return compare


@pytest.fixture(scope="module")
def exp_repo(tmp_path_factory) -> Path:
    ws = tmp_path_factory.mktemp("exps")
    (ws / "evaluate.py").write_text(FAKE_EVALUATE)
    params = {"profile": "demo", "dpo": {"pair_strategy": "near_level", "loss": "sigmoid", "beta": 0.1}}
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    stage = {"cmd": "python evaluate.py", "deps": ["evaluate.py"], "params": ["dpo"]}
    stage["metrics"] = [
        {"reports/metrics.json": {"cache": False}},
        {"reports/train/dpo_metrics.json": {"cache": False}},
    ]
    (ws / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"evaluate": stage}}))
    _run(["git", "init", "-q"], ws)
    _run(["dvc", "init", "-q"], ws)
    _run(["dvc", "repro", "-q"], ws)
    _run(["git", "add", "-A"], ws)
    _run(["git", "commit", "-qm", "baseline"], ws)
    for strategy, loss in (("far_level", "sigmoid"), ("cross_image", "ipo")):
        _run(
            ["dvc", "exp", "run", "--queue", "-n", f"{strategy}-{loss}"]
            + ["-S", f"dpo.pair_strategy={strategy}", "-S", f"dpo.loss={loss}"],
            ws,
        )
    _run(["dvc", "exp", "run", "--run-all", "--jobs", "1"], ws)
    return ws


@pytest.mark.slow  # the fixture's `dvc exp run` queue takes ~20 s
def test_ranks_real_dvc_experiments_with_cis(exp_repo):
    _run([sys.executable, str(ROOT / "scripts/compare_experiments.py"), "--out", "reports/experiments.md"], exp_repo)
    md = (exp_repo / "reports/experiments.md").read_text()
    ranking = json.loads((exp_repo / "reports/experiments.json").read_text())["ranking"]
    assert [r["name"] for r in ranking][1:] == ["cross_image-ipo", "far_level-sigmoid"]
    assert ranking[0]["kind"] == "baseline" and ranking[0]["params"]["dpo.pair_strategy"] == "near_level"
    far = ranking[2]
    assert far["params"]["dpo.loss"] == "sigmoid" and far["val_srcc"] == pytest.approx(0.55)
    assert far["val_srcc_ci"] == pytest.approx([0.45, 0.65])  # from the experiment's commit: exp show drops lists
    lo, hi = far["hard_pair_acc_ci"]
    assert lo < 0.65 < hi
    row = next(line for line in md.splitlines() if "far_level-sigmoid" in line)
    assert "0.550 [0.450, 0.650]" in row and "| 3 |" in row and "| yes |" in row
    assert "| 0.050 [0.000, 0.100] |" in row  # DPO - SFT on hard pairs, with its CI
    assert row.endswith("| -0.050 [-0.150, 0.050] |")  # and on test SRCC
    assert "## By pair strategy" in md and "| cross_image | 1 | 0.600 |" in md


@pytest.mark.slow
def test_finetuning_tables_set_loss_beside_srcc(exp_repo):
    _run(
        [sys.executable, str(ROOT / "scripts/compare_experiments.py"), "--finetuning", "--out", "reports/ft.md"],
        exp_repo,
    )
    md = (exp_repo / "reports/ft.md").read_text()
    runs = json.loads((exp_repo / "reports/ft.json").read_text())["runs"]
    assert runs["sft"] == [] and "## sft\n\nNo run with metrics" in md
    far = next(r for r in runs["dpo"] if r["name"] == "far_level-sigmoid")
    assert far["train"]["final_eval_loss"] == pytest.approx(0.55)  # read from the experiment's own commit
    row = next(line for line in md.splitlines() if line.startswith("| far_level-sigmoid"))
    assert "| 0.2750 | 0.5500 | 0.550 [0.450, 0.650] |" in row
    assert "Lowest validation loss picks `far_level-sigmoid`, not `" in md and "CIs overlap" in md
    _run(
        [sys.executable, str(ROOT / "scripts/compare_experiments.py"), "--finetuning", "--match", "far_*"]
        + ["--out", "reports/ft_far.md"],
        exp_repo,
    )
    names = [r["name"] for r in json.loads((exp_repo / "reports/ft_far.json").read_text())["runs"]["dpo"]]
    assert "far_level-sigmoid" in names and "cross_image-ipo" not in names and len(names) == 2  # + baseline


@pytest.mark.slow
def test_saved_exp_show_json_and_missing_runs(exp_repo, tmp_path):
    show = json.loads(_run(["dvc", "exp", "show", "--json"], exp_repo).stdout)
    show[-1]["experiments"].append({"revs": [{"rev": "f" * 40, "name": "broken", "error": {"msg": "failed"}}]})
    running = {"rev": "e" * 40, "name": "running-one", "data": show[-1]["data"]}  # metrics not its own yet
    show[-1]["experiments"].append({"revs": [running], "executor": {"state": "running"}})
    (tmp_path / "show.json").write_text(json.dumps(show))
    mod = _script()
    cwd = os.getcwd()
    os.chdir(exp_repo)
    try:
        rows, skipped = mod.collect(
            mod.exp_show(tmp_path / "show.json"), "reports/metrics.json", "params.yaml", "dpo", False
        )
    finally:
        os.chdir(cwd)
    assert len(rows) == 3 and skipped == ["broken: failed", "running-one: experiment running"]
    assert "broken: failed" in mod.render(rows, skipped, "dpo")


@pytest.mark.slow  # shares the fixture's `dvc exp run` queue
def test_several_baseline_commits_list_a_rerun_baseline_once(exp_repo):
    """--rev: experiments of older commits join the ranking; a baseline rerun with equal metrics is shown once."""
    mod = _script()
    cwd = os.getcwd()
    os.chdir(exp_repo)
    try:
        show = mod.exp_show(None, ["HEAD"])  # the real `dvc exp show --json --rev HEAD`
        again = dict(show[-1], rev="a" * 40, name=None, experiments=[])  # another commit, same pipeline outputs
        rows, skipped = mod.collect(show + [again], "reports/metrics.json", "params.yaml", "dpo", False)
    finally:
        os.chdir(cwd)
    assert sorted(r["name"] for r in rows if r["kind"] == "experiment") == ["cross_image-ipo", "far_level-sigmoid"]
    assert [r["kind"] for r in rows].count("baseline") == 1
    baseline = next(r["name"] for r in rows if r["kind"] == "baseline")
    assert skipped == [f"aaaaaaa: baseline with the same metrics as {baseline}"]


def test_wilson_interval():
    mod = _script()
    lo, hi = mod.wilson(0.8, 100)
    assert lo == pytest.approx(0.7112, abs=1e-3) and hi == pytest.approx(0.8666, abs=1e-3)
    assert mod.wilson(None, 10) is None and mod.wilson(0.5, 0) is None


def _make_n(*args: str) -> str:
    proc = subprocess.run(["make", "-n", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_make_compare_queues_the_grid():
    out = _make_n("compare", "STRATEGIES=near_level on_policy", "LOSSES=sigmoid orpo")
    assert "for s in near_level on_policy; do for l in sigmoid orpo" in out
    assert "-S dpo.pair_strategy=$s -S dpo.loss=$l" in out and "dvc exp run --run-all" in out
    assert "scripts/compare_experiments.py --out reports/experiments.md" in out


def test_make_compare_finetuning_queues_full_and_lora():
    out = _make_n("compare-finetuning")
    assert "for t in full lora" in out and "-S sft.finetuning_type=$t -S dpo.finetuning_type=$t" in out
    assert "scripts/compare_experiments.py --finetuning --match 'ft-*' --out reports/finetuning.md" in out


def test_make_train_multi_sets_the_torchrun_environment():
    node0 = _make_n("train-multi", "GPUS=8", "STAGE=dpo")
    assert "FORCE_TORCHRUN=1 NPROC_PER_NODE=8 NNODES=1 NODE_RANK=0" in node0
    assert "dvc repro --force --single-item dpo" in node0
    worker = _make_n("train-multi", "GPUS=8", "NNODES=2", "NODE_RANK=1", "MASTER_ADDR=10.0.0.1", "MASTER_PORT=29500")
    assert "NNODES=2 NODE_RANK=1" in worker and "MASTER_ADDR=10.0.0.1 MASTER_PORT=29500" in worker
    assert "scripts/train_sft.py" in worker and "dvc repro" not in worker


def test_holdout_column_names_the_draw():
    mod = _script()
    assert mod._holdout({"dpo.sft_holdout": 0.25, "dpo.sft_holdout_seed": 1}) == "0.25 (seed 1)"
    assert mod._holdout({"dpo.sft_holdout": 0.25, "dpo.sft_holdout_seed": None}) == "0.25"
    assert mod._holdout({}) == "0"
