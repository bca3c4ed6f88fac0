"""The API annotator against a real OpenAI-compatible server: `llamafactory-cli api` serving the demo's
tiny model on 127.0.0.1. The tiny model writes nonsense, so every answer must come back, be validated
and be recorded as an invalid-answer failure: the plumbing (auth, image upload, retries, records) is
what is tested."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ..conftest import ROOT

pytestmark = pytest.mark.slow
KEY = "sk-local-llamafactory-test-7f3a"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    port = _free_port()
    log = tmp_path_factory.mktemp("lfapi") / "server.log"
    env = dict(os.environ, API_HOST="127.0.0.1", API_PORT=str(port), API_KEY=KEY)
    cli = Path(sys.executable).with_name("llamafactory-cli")
    with log.open("w") as fh:
        proc = subprocess.Popen(
            [
                str(cli),
                "api",
                "--model_name_or_path",
                str(tiny_model_dir),
                "--template",
                "qwen2_vl",
                "--infer_backend",
                "huggingface",
            ],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        for _ in range(120):
            if proc.poll() is not None:
                pytest.fail(f"llamafactory-cli api exited: {log.read_text()[-2000:]}")
            try:
                req = urllib.request.Request(url + "/models", headers={"Authorization": f"Bearer {KEY}"})
                model = json.load(urllib.request.urlopen(req, timeout=2))["data"][0]["id"]
                break
            except OSError:
                time.sleep(1)
        else:
            pytest.fail("llamafactory-cli api did not come up in 120 s")
        yield url, model, log
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _manifest(folder: Path, n: int = 3) -> Path:
    rng = np.random.default_rng(0)
    rows = ["image_id,path,mos,split"]
    for i in range(n):
        p = folder / f"img{i}.png"
        Image.fromarray((rng.random((56, 56, 3)) * 255).astype("uint8")).save(p)
        rows.append(f"img{i},{p},{2 + 3 * i},train")
    manifest = folder / "manifest.csv"
    manifest.write_text("\n".join(rows) + "\n")
    return manifest


def _annotate(url: str, model: str, manifest: Path, out: Path, key: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OPENAI_API_KEY=key)
    return subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts/annotate.py"),
            "--manifest",
            str(manifest),
            "--out",
            str(out),
            "--base-url",
            url,
            "--model",
            model,
            "--concurrency",
            "2",
            "--max-tries",
            "2",
            "--key-env",
            "OPENAI_API_KEY",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_annotation_round_trip_through_llamafactory_api(server, tmp_path):
    url, model, log = server
    manifest = _manifest(tmp_path)
    out = tmp_path / "ann.jsonl"
    proc = _annotate(url, model, manifest, out, KEY)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["total"] == 3 and summary["requests"] >= 3 and summary["completion_tokens"] > 0
    failures = [json.loads(line) for line in (tmp_path / "ann.jsonl.failures.jsonl").read_text().splitlines()]
    done = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    assert sorted(r["image_id"] for r in failures + done) == ["img0", "img1", "img2"]
    assert all("invalid answer" in f["reason"] for f in failures)
    assert log.read_text().count("POST /v1/chat/completions") == summary["requests"]
    for f in tmp_path.rglob("*"):
        if f.is_file():
            assert KEY not in f.read_text(errors="ignore"), f


def test_wrong_key_is_one_line_401(server, tmp_path):
    url, model, _ = server
    proc = _annotate(url, model, _manifest(tmp_path, 1), tmp_path / "ann.jsonl", "sk-wrong-key-0000")
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "401" in err[0] and "sk-wrong-key-0000" not in proc.stderr
