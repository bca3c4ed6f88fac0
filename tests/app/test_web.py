"""The web page as a person uses it (a real headless Chromium uploads a photo and reads the score off the page)
and as a program does (gradio_client calls the named endpoints), against `scripts/app.py` on 127.0.0.1."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aesthetic_llm.app.compare import prob_first_better

from ..conftest import ROOT
from .cdp import Browser, find_browser

MODEL = ROOT / "pretrained/tiny-qwen2vl-base"  # the committed demo base: a real checkpoint, loads in seconds


def test_prob_first_better_matches_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = rng.dirichlet(np.ones(10)), rng.dirichlet(np.ones(10))
        brute = sum(a[i] * b[j] * (1.0 if i > j else 0.5 if i == j else 0.0) for i in range(10) for j in range(10))
        assert prob_first_better(a, b) == pytest.approx(brute, abs=1e-12)
        assert prob_first_better(a, b) + prob_first_better(b, a) == pytest.approx(1.0)
    assert prob_first_better([0.2, 0.8], [0.2, 0.8]) == pytest.approx(0.5)
    assert prob_first_better([0, 0, 1], [1, 0, 0]) == 1.0
    with pytest.raises(ValueError, match="shapes"):
        prob_first_better([0.5, 0.5], [1.0])


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("photos")
    ramp = np.linspace(0, 255, 64, dtype=np.uint8)
    Image.fromarray(np.stack([np.tile(ramp, (64, 1))] * 3, axis=-1)).save(d / "ramp.png")
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(d / "noise.jpg")
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a JPEG")
    return {p.stem: p for p in d.iterdir()}


@pytest.fixture(scope="module")
def app_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, str(ROOT / "scripts/app.py"), "--model", str(MODEL), "--port", str(port), "--mode", "direct"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 180
    while True:
        try:
            if urllib.request.urlopen(url, timeout=2).status == 200:
                break
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail(f"app did not come up: {proc.stdout.read()[-3000:]}")
        time.sleep(0.5)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def test_api_endpoints_score_compare_and_batch(app_url, photos):
    from gradio_client import Client, handle_file

    client = Client(app_url, verbose=False)
    named = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/score", "/compare", "/batch"} <= set(named)
    summary, dist, critique = client.predict(handle_file(photos["ramp"]), "direct", api_name="/score")
    assert "ramp.png" in summary and "score" in summary
    probs = [row[1] for row in dist["data"]]
    assert len(probs) == 10 and sum(probs) == pytest.approx(1.0, abs=1e-4) and critique == ""
    score = float(summary.split("**")[3])
    assert score == pytest.approx(sum((1 + 9 * i / 9) * p for i, p in enumerate(probs)), abs=0.01)
    verdict, _ = client.predict(handle_file(photos["ramp"]), handle_file(photos["ramp"]), "direct", api_name="/compare")
    assert "P(first is better) = **0.500**" in verdict  # the same photo twice: a coin flip
    table, csv_path, notes = client.predict(
        [handle_file(photos["ramp"]), handle_file(photos["broken"]), handle_file(photos["noise"])],
        "direct",
        api_name="/batch",
    )
    assert {row[0] for row in table["data"]} == {"ramp.png", "noise.jpg"}  # the broken upload skipped, not fatal
    scores = [row[1] for row in table["data"]]
    assert scores == sorted(scores, reverse=True)
    assert "2 photo(s) scored" in notes and "broken.jpg" in notes
    assert Path(csv_path).read_text().splitlines()[0] == "file,score,level,critique"
    with pytest.raises(Exception, match="cannot score broken.jpg"):
        client.predict(handle_file(photos["broken"]), "direct", api_name="/score")
    summary, _, critique = client.predict(handle_file(photos["noise"]), "cot", api_name="/score")
    assert "noise.jpg" in summary and critique.startswith("Analysis:")  # still serving, and cot writes a critique


@pytest.fixture(scope="module")
def browser():
    executable = find_browser()
    if executable is None:
        pytest.skip("no Chromium on this machine (.ci/run installs Debian's `chromium` where it can)")
    b = Browser(executable)
    yield b
    b.close()


def test_a_person_uploads_a_photo_and_reads_its_score(app_url, photos, browser, tmp_path):
    browser.open(app_url)
    browser.wait_for("document.querySelector('#score-button') !== null")
    browser.set_files("#score-file input[type=file]", [photos["ramp"]])
    browser.wait_for("document.querySelector('#score-file').innerText.includes('ramp.png')")  # uploaded
    browser.js("document.querySelector('#score-button').click()")
    text = browser.wait_for("(t => t.includes('score') ? t : '')(document.querySelector('#score-summary').innerText)")
    assert "ramp.png" in text and "/ 10" in text
    assert 1.0 <= float(text.split("score")[1].split("/")[0]) <= 10.0
    browser.screenshot(tmp_path / "page.png")
    assert Image.open(tmp_path / "page.png").size[0] > 0
    # A corrupt upload: the page says which file and why, and the app keeps serving the next one.
    browser.js("document.querySelector('#score-file button[aria-label=\"Clear\"]')?.click()")
    browser.set_files("#score-file input[type=file]", [photos["broken"]])
    browser.wait_for("document.querySelector('#score-file').innerText.includes('broken.jpg')")
    browser.js("document.querySelector('#score-button').click()")
    browser.wait_for("document.body.innerText.includes('cannot score broken.jpg')")
    browser.js("document.querySelector('#score-file button[aria-label=\"Clear\"]')?.click()")
    browser.set_files("#score-file input[type=file]", [photos["noise"]])
    browser.wait_for("document.querySelector('#score-file').innerText.includes('noise.jpg')")
    browser.js("document.querySelector('#score-button').click()")
    assert "noise.jpg" in browser.wait_for(
        "(t => t.includes('noise.jpg') ? t : '')(document.querySelector('#score-summary').innerText)"
    )
