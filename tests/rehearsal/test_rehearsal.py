"""`make rehearse`: the paper profile end to end on CPU (real `dvc repro`, real llamafactory-cli with LoRA +
merge and DeepSpeed ZeRO-2 under torchrun, a real HTTP critic on 127.0.0.1), asserted on what it wrote.

One rehearsal per session (about 10 minutes on 2 cores); each test reads a different part of its outputs.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from aesthetic_llm.params import READS_LOG
from aesthetic_llm.rehearsal.overrides import load_overrides

from ..conftest import param_read_problems

ROOT = Path(__file__).resolve().parents[2]
OVERRIDES = ROOT / "configs/rehearsal.yaml"
READS_FILE = "params_reads.jsonl"
pytestmark = pytest.mark.slow


def _git_status() -> str:
    out = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True)
    return out.stdout if out.returncode == 0 else "(not a git checkout)"


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    out = tmp_path_factory.mktemp("rehearsal")
    before = _git_status()
    env = dict(os.environ, **{READS_LOG: str(out / READS_FILE)})  # each stage logs the param keys it read
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts/rehearse.py"), "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {"out": out, "stdout": proc.stdout, "git_before": before, "git_after": _git_status()}


def _metrics(r) -> dict:
    return json.loads((r["out"] / "reports/metrics.json").read_text())


def test_the_overrides_are_printed_recorded_and_nothing_else_differs_from_paper(rehearsal):
    overrides, why = load_overrides(OVERRIDES)
    m = _metrics(rehearsal)
    assert m["profile"] == "paper"
    assert set(m["rehearsal"]["overrides"]) == set(overrides) and all(why[k] for k in overrides)
    for key in overrides:
        assert f"  {key} = " in rehearsal["stdout"]  # printed at the start
    used = yaml.safe_load((rehearsal["out"] / "reports/params_used.yaml").read_text())
    # the paper's recipe, not the demo's: LoRA + merge, batch 1 x accumulation 16, a DeepSpeed config
    assert used["sft"]["finetuning_type"] == "lora" and used["dpo"]["finetuning_type"] == "lora"
    assert used["sft"]["gradient_accumulation_steps"] == 16 and used["sft"]["per_device_train_batch_size"] == 1
    assert "paper/" in used["sft"]["config"] and "paper/" in used["dpo"]["config"]
    report = (rehearsal["out"] / "reports/report.md").read_text()
    assert "**Rehearsal**" in report and "(paper profile)" in report
    # the committed demo outputs and params.yaml are untouched
    assert rehearsal["git_after"] == rehearsal["git_before"]


def test_every_paper_param_a_stage_reads_is_listed_for_it(rehearsal):
    """As the end-to-end test checks for the demo: here with the paper overlay, LoRA, the API critic, AVA."""
    assert param_read_problems(rehearsal["out"] / "workspace", rehearsal["out"] / READS_FILE) == []


def test_every_stage_ran(rehearsal):
    ws = rehearsal["out"] / "workspace"
    lock = yaml.safe_load((ws / "dvc.lock").read_text())["stages"]
    dvc = yaml.safe_load((ws / "dvc.yaml").read_text())["stages"]
    seeds = yaml.safe_load((ws / "params.yaml").read_text())["seeds"]
    expected = {f"{name}@{s}" for name, st in dvc.items() if "foreach" in st for s in seeds}
    expected |= {name for name, st in dvc.items() if "foreach" not in st}
    assert expected <= set(lock), sorted(expected - set(lock))
    status = subprocess.run([str(Path(sys.executable).with_name("dvc")), "status"], cwd=ws, capture_output=True)
    assert status.returncode == 0 and b"up to date" in status.stdout, status.stdout


def test_lora_adapters_were_merged_into_checkpoints_the_scorer_loaded(rehearsal):
    ws = rehearsal["out"] / "workspace"
    for stage in ("sft", "qalign_style", "dpo"):
        model = ws / "models" / stage / "seed42"
        assert (model / "model.safetensors").is_file() and (model / "config.json").is_file(), stage
        assert list((model / "adapter").glob("adapter_model.safetensors")), stage
        train = json.loads((ws / f"reports/train/seed42/{stage}_metrics.json").read_text())
        assert train["finetuning_type"] == "lora" and train["launch"]["deepspeed"]["zero_stage"] == 2
    rows = list(csv.DictReader((rehearsal["out"] / "reports/predictions/seed42.csv").open()))
    base = list(csv.DictReader((rehearsal["out"] / "reports/predictions/base.csv").open()))
    preds = {(r["model"], r["split"], r["image_id"]): float(r["pred"]) for r in rows + base}
    test_ids = sorted({i for m, s, i in preds if m == "zero_shot" and s == "test"})
    assert test_ids
    for model in ("sft", "dpo"):
        assert all((model, "test", i) in preds for i in test_ids)
        # the merged weights are not the base's: the scores move (a LoRA that did not merge would score as zero-shot)
        assert any(preds[(model, "test", i)] != preds[("zero_shot", "test", i)] for i in test_ids), model


def test_the_damaged_rows_and_images_are_listed_with_file_and_line(rehearsal):
    planted = json.loads((rehearsal["out"] / "inputs/planted.json").read_text())["planted"]
    stats = json.loads((rehearsal["out"] / "reports/stats.json").read_text())
    listed = {(s["file"], s["line"], s["kind"]) for s in stats["skipped"]}
    assert {(p["file"], p["line"], p["kind"]) for p in planted} == listed
    assert stats["skipped_total"] == len(planted)
    assert all(stats["counts"][split] > 0 for split in ("train", "val", "test", "unseen", "hard"))
    assert stats["scaled_subsets"]["used"]["train"] < stats["scaled_subsets"]["requested"]["train"]


def test_critiques_with_ordinary_numbers_were_accepted_through_the_faults(rehearsal):
    summary = json.loads((rehearsal["out"] / "reports/annotate_summary.json").read_text())
    for split in ("train", "val"):
        api = summary["api"][split]
        assert api["failed"] == 0 and api["annotated"] == api["total"] == summary["counts"][split]
    assert sum(sum(summary["api"][s]["retries"].values()) for s in ("train", "val")) > 0  # faults met and retried
    served = _metrics(rehearsal)["rehearsal"]["critic_server"]
    assert served["faults"].get("429", 0) > 0 and served["faults"].get("malformed", 0) > 0
    anns = [json.loads(line) for line in (rehearsal["out"] / "workspace/data/annotations/train.jsonl").open()]
    with_numbers = [a for a in anns if re.search(r"\d", a["critique"].rsplit("Rating Level", 1)[0])]
    assert len(with_numbers) == len(anns)  # every critic answer quotes numbers (f/2.8, 35mm, counts)


def test_the_report_has_every_model_row(rehearsal):
    m = _metrics(rehearsal)
    models = ("zero_shot", "zero_shot_qalign5", "qalign_style", "sft", "dpo", "qalign_standin_published")
    assert set(models) <= set(m["models"])
    report = (rehearsal["out"] / "reports/report.md").read_text()
    for model in models:
        assert re.search(rf"^\| {model} \| -?\d", report, re.M), model
