"""Scoring people's own photos: CLI over files and folders, unreadable files reported and skipped; Python API."""

import csv
import subprocess
import sys

import numpy as np
from PIL import Image

from aesthetic_llm.scorer import Scorer, expand_paths

from ..conftest import ROOT


def _photos(folder):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray((rng.random((70, 90, 3)) * 255).astype("uint8")).save(folder / f"p{i}.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_expand_paths_keeps_files_and_expands_folders(tmp_path):
    folder = _photos(tmp_path / "shots")
    paths = expand_paths([folder, tmp_path / "missing.png"])
    assert [p.name for p in paths] == ["broken.jpg", "p0.png", "p1.png", "p2.png", "missing.png"]


def test_python_api_scores_and_skips(tmp_path, tiny_model_dir):
    folder = _photos(tmp_path / "shots")
    scorer = Scorer(tiny_model_dir, mode="cot", max_new_tokens=6, batch_size=2, device="cpu")
    scores = scorer([folder / "p0.png", folder / "broken.jpg", Image.open(folder / "p1.png")])
    assert len(scores) == 2 and all(1.0 <= s <= 10.0 for s in scores)
    assert [(p, why.split(" ")[0]) for p, why in scorer.skipped] == [(str(folder / "broken.jpg"), "unreadable")]
    detailed = scorer.score([folder / "p2.png"], critique=True)
    assert detailed[0].critique is not None and detailed[0].path.endswith("p2.png")


def test_cli_folder_to_csv(tmp_path, tiny_model_dir):
    folder = _photos(tmp_path / "shots")
    out = tmp_path / "scores.csv"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts/score_images.py"),
            "--model",
            str(tiny_model_dir),
            str(folder),
            str(tmp_path / "gone.png"),
            "--csv",
            str(out),
            "--max-new-tokens",
            "6",
            "--batch-size",
            "2",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"skipped: {folder / 'broken.jpg'}: unreadable" in proc.stderr
    assert f"skipped: {tmp_path / 'gone.png'}: not found" in proc.stderr
    rows = list(csv.DictReader(out.open()))
    assert [r["path"].rsplit("/", 1)[1] for r in rows] == ["p0.png", "p1.png", "p2.png"]
    assert len(proc.stdout.strip().splitlines()) == 3


def test_cli_with_nothing_readable_fails_in_one_line(tmp_path, tiny_model_dir):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts/score_images.py"), "--model", str(tiny_model_dir), str(bad)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == "error: none of the 1 input file(s) could be read"


def test_cli_cot_sampled_and_a_bad_sample_count(tmp_path, tiny_model_dir):
    folder = _photos(tmp_path / "shots")
    base = [
        sys.executable,
        str(ROOT / "scripts/score_images.py"),
        "--model",
        str(tiny_model_dir),
        str(folder / "p0.png"),
    ]
    ok = subprocess.run(
        base + ["--mode", "cot_sampled", "--samples", "2", "--max-new-tokens", "4", "--critique"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert ok.returncode == 0, ok.stderr[-2000:]
    path, score, *_ = ok.stdout.strip().split("\t")
    assert path.endswith("p0.png") and 1.0 <= float(score) <= 10.0
    bad = subprocess.run(base + ["--mode", "cot_sampled", "--samples", "0"], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1] == "error: --samples 0: expected at least 1"
