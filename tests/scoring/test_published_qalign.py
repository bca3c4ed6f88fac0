"""The published Q-Align stage: demo skip, the worker's loading/scoring/resume path, evaluate --also.

The real checkpoints (7B mPLUG-Owl2, hub only) cannot be fetched here. The worker is exercised on a
NAMED STAND-IN (aesthetic_llm.rehearsal.qalign_standin, also used by `make rehearse`): a tiny remote-code checkpoint
(`StandInScorer`, not Q-Align) saved to disk, loaded through the same
`AutoModelForCausalLM.from_pretrained(..., trust_remote_code=True)` call and exposing the same
`score(images, task_=, input_=)` interface; its score is the image's mean brightness on 1-5.
The worker runs in the main environment and, where `make setup-qalign` has built it, in .venv-qalign.
"""

from __future__ import annotations

import copy
import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aesthetic_llm.errors import UserError
from aesthetic_llm.evaluation.evaluate import evaluate
from aesthetic_llm.params import Params
from aesthetic_llm.rehearsal.qalign_standin import build_standin
from aesthetic_llm.scoring.published_qalign import PUBLISHED_AVA, run

from ..conftest import ROOT

WORKER = ROOT / "src/aesthetic_llm/scoring/qalign_worker.py"


@pytest.fixture(scope="module")
def standin(tmp_path_factory) -> Path:
    return build_standin(tmp_path_factory.mktemp("standin"))


@pytest.fixture()
def prepared(tmp_path) -> Path:
    """data/prepared-like tree: test (4 images, 2 of them hard) and unseen (2 images)."""
    out = tmp_path / "prepared"
    for split, levels in (("test", [40, 90, 160, 220]), ("unseen", [70, 200])):
        (out / split).mkdir(parents=True)
        rows = []
        for i, v in enumerate(levels):
            path = out / split / f"{split}{i}.png"
            Image.fromarray(np.full((16, 16, 3), v, np.uint8)).save(path)
            rows.append({"image_id": f"{split}{i}", "path": str(path), "mos": f"{1 + 9 * v / 255:.3f}"})
        with (out / split / "manifest.csv").open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["image_id", "path", "mos"])
            w.writeheader()
            w.writerows(rows)
    (out / "hard").mkdir()
    (out / "hard/manifest.csv").write_text("image_id,path,mos\ntest1,x,1\ntest2,y,2\n")
    return out


def _params(prepared: Path, **overrides) -> Params:
    import yaml

    raw = copy.deepcopy(yaml.safe_load((ROOT / "params.yaml").read_text()))
    raw["data"]["out_dir"] = str(prepared)
    raw["published_qalign"].update(overrides)
    return Params(raw, profile="demo")


def _worker(python: str, standin: Path, prepared: Path, out: Path) -> subprocess.CompletedProcess:
    cmd = [python, str(WORKER), "--model", str(standin), "--name", "standin", "--out", str(out)]
    cmd += ["--device", "cpu", "--dtype", "float32", "--batch-size", "3"]
    cmd += [
        "--manifest",
        f"test={prepared / 'test/manifest.csv'}",
        "--manifest",
        f"unseen={prepared / 'unseen/manifest.csv'}",
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


PYTHONS = [sys.executable] + (
    [str(ROOT / ".venv-qalign/bin/python")] if (ROOT / ".venv-qalign/bin/python").exists() else []
)


@pytest.mark.parametrize("python", PYTHONS, ids=lambda p: "qalign-env" if "qalign" in p else "main-env")
def test_worker_scores_maps_to_mos_and_resumes(python, standin, prepared, tmp_path):
    out = tmp_path / "pred.csv"
    proc = _worker(python, standin, prepared, out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = list(csv.DictReader(out.open()))
    assert [r["image_id"] for r in rows] == ["test0", "test1", "test2", "test3", "unseen0", "unseen1"]
    by_id = {r["image_id"]: r for r in rows}
    # brightness 90/255 -> stand-in score 1 + 4*0.353 on 1-5 -> 1 + 9*0.353 on the MOS scale
    assert float(by_id["test1"]["pred"]) == pytest.approx(1 + 9 * 90 / 255, abs=1e-3)
    assert {r["split"] for r in rows} == {"test", "unseen"} and {r["model"] for r in rows} == {"standin"}
    again = _worker(python, standin, prepared, out)
    assert again.returncode == 0 and "0 images to score (6 already" in again.stdout
    assert len(list(csv.DictReader(out.open()))) == 6


def test_worker_names_the_unreadable_image(standin, prepared, tmp_path):
    (prepared / "test/test2.png").write_bytes(b"not an image")
    proc = _worker(sys.executable, standin, prepared, tmp_path / "pred.csv")
    assert proc.returncode == 2
    assert "test/manifest.csv: image test2: cannot read" in proc.stderr.strip().splitlines()[-1]


def test_stage_on_demo_is_skipped_and_evaluate_accepts_the_empty_file(prepared, tmp_path, capsys):
    out = tmp_path / "published.csv"
    summary = run(_params(prepared), out)
    assert summary["rows"] == 0 and "skipped on the demo profile" in summary["skipped"]
    assert out.read_text().strip() == "image_id,model,split,pred,mos"
    ours = tmp_path / "ours.csv"
    ours.write_text("image_id,model,split,pred,mos\n" + "".join(f"t{i},zero_shot,test,{i},{i % 3}\n" for i in range(6)))
    m = evaluate([ours], None, also=[out], n_boot=0)
    assert list(m["models"]) == ["zero_shot"] and m["settings"]["also"] == [str(out)]


def test_stage_runs_the_worker_and_adds_hard_rows(standin, prepared, tmp_path):
    p = _params(prepared, enabled=True, models={"standin_published": str(standin)}, dtype="float32")
    out = tmp_path / "published.csv"
    summary = run(p, out, python=sys.executable)
    rows = list(csv.DictReader(out.open()))
    assert summary["rows"] == len(rows) == 8  # 4 test + 2 unseen + 2 hard (subset of test)
    assert sorted(r["image_id"] for r in rows if r["split"] == "hard") == ["test1", "test2"]
    ours = tmp_path / "ours.csv"
    ours.write_text("image_id,model,split,pred,mos\ntest0,zero_shot,test,1,1\ntest1,zero_shot,test,2,2\n")
    m = evaluate([ours], None, also=[out], n_boot=0)
    assert m["models"]["standin_published"]["test"]["srcc"] == pytest.approx(1.0)  # brightness is the mos here
    with pytest.raises(UserError, match="scored twice"):
        evaluate([out], None, also=[out], n_boot=0)


def test_stage_without_the_env_says_how_to_build_it(prepared, tmp_path):
    p = _params(prepared, enabled=True, python=str(tmp_path / "missing/python"))
    with pytest.raises(UserError, match=r"published_qalign.python: .* not found \(run `make setup-qalign`"):
        run(p, tmp_path / "x.csv")


def test_published_figures_are_labelled_with_their_source():
    assert all(r["source"] and r["srcc"] for r in PUBLISHED_AVA)
    from aesthetic_llm.evaluation.tables import published_table

    text = "\n".join(published_table())
    assert "quoted, not computed here" in text and "0.822" in text and "arXiv:2312.17090" in text
