"""End to end: the real DVC pipeline (real llamafactory-cli SFT and DPO) at seconds scale in a temp copy.

Checks what a user relies on: every stage runs once per training seed, metrics come from this run's own
predictions (seed means of per-seed values), a second `dvc repro` is a no-op, changing dpo.beta reruns
exactly DPO and what follows for every seed, adding a seed trains only that seed, and bad input fails with
one line while earlier results stay on disk.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats

from aesthetic_llm.params import READS_LOG, SMALL_OVERLAY, shrunk

from .conftest import ROOT, param_read_problems

pytestmark = pytest.mark.slow
SEEDS = (1, 2)
SEEDED = ("qalign_style", "sft", "dpo_data", "dpo", "score")
ALL_STAGES = {"model", "data", "annotate", "sft_data", "score_base", "published_qalign", "evaluate", "report"} | {
    f"{stage}@{seed}" for stage in SEEDED for seed in SEEDS
}
READS_FILE = "params_reads.jsonl"
MODELS = {"zero_shot", "zero_shot_qalign5", "qalign_style", "sft", "dpo"}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(DVC_NO_ANALYTICS="1", PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false")
    return env


def _run(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(_env(), **{READS_LOG: str(cwd / READS_FILE)})  # each stage logs the param keys it read
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    return proc


def _ran(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    ws = tmp_path_factory.mktemp("pipeline")
    for name in ("src", "scripts", "llamafactory_configs", "pretrained"):
        shutil.copytree(ROOT / name, ws / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", "requirements-qalign.lock"):
        shutil.copy(ROOT / name, ws / name)
    params = shrunk(yaml.safe_load((ROOT / "params.yaml").read_text()), ROOT / SMALL_OVERLAY)
    params["seeds"] = list(SEEDS)
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _run(["git", "init", "-q"], ws)
    _run(["dvc", "init", "-q"], ws)
    return ws


@pytest.fixture(scope="module")
def first_run(workspace) -> str:
    return _run(["dvc", "repro"], workspace).stdout


def test_every_stage_runs_and_writes_its_outputs(workspace, first_run):
    assert _ran(first_run) == ALL_STAGES
    for path in ("models/init/config.json", "data/prepared/hard_pairs.csv", "data/llamafactory/sft/dataset_info.json"):
        assert (workspace / path).exists(), path
    for path in ("reports/metrics.json", "reports/report.md", "reports/figures/scatter_test.png", "dvc.lock"):
        assert (workspace / path).exists(), path
    for seed in SEEDS:
        for path in (
            "models/sft/seed{s}/model.safetensors",
            "models/dpo/seed{s}/model.safetensors",
            "models/qalign_style/seed{s}/model.safetensors",
            "data/llamafactory/dpo/seed{s}/pair_stats.json",
            "reports/train/seed{s}/sft_log.csv",
            "reports/train/seed{s}/dpo_log.csv",
            "reports/train/seed{s}/sft_config.yaml",
            "reports/predictions/seed{s}.csv",
        ):
            assert (workspace / path.format(s=seed)).exists(), path.format(s=seed)
        cfg = yaml.safe_load((workspace / f"reports/train/seed{seed}/dpo_config.yaml").read_text())
        assert cfg["stage"] == "dpo" and cfg["model_name_or_path"] == f"models/sft/seed{seed}"
        assert cfg["seed"] == seed and cfg["pref_beta"] == 0.1
        env = json.loads((workspace / f"reports/train/seed{seed}/sft_metrics.json").read_text())["environment"]
        assert env["threads"] == 2 and env["env"]["MKL_CBWR"] and env["cpu_capability"] == "AVX2"


def test_every_param_a_stage_reads_is_listed_for_it(workspace, first_run):
    """A key a stage reads that its dvc.yaml `params` lacks would not rerun the stage when changed; a key read
    with a default that params.yaml lacks cannot be listed at all (both were once true of a DPO knob)."""
    stages = yaml.safe_load((workspace / "dvc.yaml").read_text())["stages"]
    logged = {json.loads(line)["script"] for line in (workspace / READS_FILE).read_text().splitlines()}
    scripts = {name: s.get("do", s)["cmd"].split()[1] for name, s in stages.items() if not s.get("frozen")}
    assert logged == set(scripts.values()), "every stage script (but the frozen base) logs its reads"
    assert param_read_problems(workspace, workspace / READS_FILE) == []
    # Float kernels and thread counts change trained weights and scores, so those stages rerun on `compute`.
    for name in ("qalign_style", "sft", "dpo_data", "dpo", "score_base", "score"):
        assert "compute" in stages[name].get("do", stages[name])["params"], name


def _predictions(workspace: Path) -> list[dict[str, str]]:
    rows = []
    for path in sorted((workspace / "reports/predictions").glob("*.csv")):
        with path.open() as fh:
            rows += list(csv.DictReader(fh))
    return rows


def test_metrics_come_from_this_runs_predictions(workspace, first_run):
    metrics = json.loads((workspace / "reports/metrics.json").read_text())
    assert set(metrics["models"]) == MODELS and metrics["settings"]["seeds"] == list(SEEDS)
    rows = _predictions(workspace)
    for model, splits in metrics["models"].items():
        assert set(splits) == {"val", "test", "hard", "unseen"}
        for split, m in splits.items():
            per_seed = []
            for seed in SEEDS if m["trained"] else ("",):
                sel = [r for r in rows if r["model"] == model and r["split"] == split and r["seed"] == str(seed)]
                assert m["n"] == len(sel) > 0
                pred = np.array([float(r["pred"]) for r in sel])
                mos = np.array([float(r["mos"]) for r in sel])
                per_seed.append(stats.spearmanr(pred, mos).statistic if np.ptp(pred) > 0 else None)
            per_seed = per_seed * (len(SEEDS) if not m["trained"] else 1)
            assert len(m["srcc_seeds"]) == len(SEEDS)
            for got, want in zip(m["srcc_seeds"], per_seed, strict=True):
                assert (got is None and want is None) or abs(got - want) < 1e-9  # full precision
            if m["srcc"] is not None:
                assert m["srcc"] == pytest.approx(np.mean(per_seed), abs=1e-12)
                assert m["srcc_spread"] == [min(per_seed), max(per_seed)]
    assert metrics["models"]["zero_shot"]["test"]["trained"] is False
    assert "srcc_diff_vs_sft" in metrics["models"]["dpo"]["test"]
    assert "srcc_diff_vs_qalign_style" in metrics["models"]["sft"]["test"]
    report = (workspace / "reports/report.md").read_text()
    srcc = metrics["models"]["sft"]["test"]["srcc"]
    assert (f"{srcc:.3f}" if srcc is not None else "n/a") in report
    assert "DPO − SFT" in report and f"over {len(SEEDS)} training seed(s)" in report


def test_second_repro_is_a_no_op(workspace, first_run):
    out = _run(["dvc", "repro"], workspace).stdout
    assert _ran(out) == set()


def test_rescore_with_cot_sampled_leaves_the_pipeline_untouched(workspace, first_run):
    args = ["--set", "score.mode=cot_sampled", "--set", "score.samples=2", "--out-dir", "rescored"]
    _run(["python", "scripts/rescore.py", *args], workspace)
    used = yaml.safe_load((workspace / "rescored/params.yaml").read_text())
    assert used["score"]["mode"] == "cot_sampled" and used["score"]["samples"] == 2
    metrics = json.loads((workspace / "rescored/metrics.json").read_text())
    assert set(metrics["models"]) == MODELS and metrics["models"]["sft"]["hard"]["n_pairs"] > 0
    assert metrics["settings"]["seeds"] == list(SEEDS)
    for name in ("base.csv", *(f"seed{s}.csv" for s in SEEDS)):
        with (
            (workspace / "rescored/predictions" / name).open() as a,
            (workspace / "reports/predictions" / name).open() as b,
        ):
            assert len(list(csv.DictReader(a))) == len(list(csv.DictReader(b)))
    assert _ran(_run(["dvc", "repro"], workspace).stdout) == set()


def test_changing_dpo_beta_reruns_only_dpo_and_downstream(workspace, first_run):
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    params["dpo"]["beta"] = 0.2
    (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = json.loads(_run(["dvc", "status", "--json"], workspace).stdout)
    assert set(status) == {f"dpo@{s}" for s in SEEDS}
    out = _run(["dvc", "repro"], workspace).stdout
    assert _ran(out) == {f"{stage}@{s}" for stage in ("dpo", "score") for s in SEEDS} | {"evaluate", "report"}
    for seed in SEEDS:
        cfg = yaml.safe_load((workspace / f"reports/train/seed{seed}/dpo_config.yaml").read_text())
        assert cfg["pref_beta"] == 0.2


def test_adding_a_seed_trains_only_that_seed(workspace, first_run):
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    params["seeds"] = [*SEEDS, 3]
    (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        out = _run(["dvc", "repro"], workspace).stdout
        assert _ran(out) == {f"{stage}@3" for stage in SEEDED} | {"evaluate", "report"}
        metrics = json.loads((workspace / "reports/metrics.json").read_text())
        assert metrics["settings"]["seeds"] == [*SEEDS, 3] and len(metrics["models"]["sft"]["test"]["srcc_seeds"]) == 3
    finally:
        params["seeds"] = list(SEEDS)
        (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        _run(["dvc", "repro"], workspace)


def test_missing_image_is_one_line_error_and_keeps_results(workspace, first_run):
    manifest = workspace / "data/prepared/test/manifest.csv"
    rows = list(csv.DictReader(manifest.open()))
    victim = workspace / rows[10]["path"]  # past the first batch of 8: the line number must still be right
    victim.chmod(0o644)
    victim.unlink()
    before = (workspace / "reports/predictions/seed1.csv").read_text()
    proc = _run([sys.executable, "scripts/score.py", "--seed", "1"], workspace, check=False)
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()
    assert err[-1].startswith("error: data/prepared/test/manifest.csv:12: cannot read image"), err[-1]
    assert (workspace / "reports/predictions/seed1.csv").read_text() == before


def test_lora_sft_is_merged_into_a_plain_checkpoint(workspace, first_run, monkeypatch):
    """The paper profile's path (LoRA + `llamafactory-cli export`), run on the tiny model on CPU."""
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    params["sft"].update(
        finetuning_type="lora",
        output_dir="models/sft_lora",
        learning_rate=1e-3,
        extra={"lora_rank": 4, "lora_target": "all", "logging_steps": 1},
    )
    (workspace / "params_lora.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _run([sys.executable, "scripts/train_sft.py", "--params", "params_lora.yaml", "--seed", "1"], workspace)
    out = workspace / "models/sft_lora/seed1"
    assert (out / "adapter/adapter_config.json").exists()
    assert (out / "model.safetensors").exists() and not (out / "adapter_config.json").exists()
    from PIL import Image

    from aesthetic_llm.scoring.engine import LevelScorer

    image = Image.open(
        workspace
        / "data/prepared/images/val/"
        / sorted(p.name for p in (workspace / "data/prepared/images/val").iterdir())[0]
    ).convert("RGB")
    pred = LevelScorer(out, 10, device="cpu").predict([image], mode="direct")[0]
    assert 1.0 <= pred.score <= 10.0
    # The unmerged adapter scores the same (merged on load), as score_images.py accepts either.
    from aesthetic_llm.scorer import Scorer

    monkeypatch.chdir(workspace)  # the adapter names its base by the relative path it was trained from
    via_adapter = Scorer(out / "adapter", mode="direct", device="cpu")([image])[0]
    assert abs(via_adapter - pred.score) < 1e-3
