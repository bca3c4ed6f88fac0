"""API annotation against a real fault-injecting OpenAI-compatible server on 127.0.0.1 (no mocked client)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aesthetic_llm.annotate.api import annotate_api, format_summary
from aesthetic_llm.annotate.api_config import ApiConfig, cache_key, load_items
from aesthetic_llm.annotate.client import AdaptiveLimiter, Scrubber
from aesthetic_llm.annotate.images import encode_image
from aesthetic_llm.annotate.journal import failures_path, load_log
from aesthetic_llm.annotate.stage import annotate
from aesthetic_llm.annotate.validate import score_leak, validate_answer
from aesthetic_llm.errors import UserError
from aesthetic_llm.io_utils import write_csv
from aesthetic_llm.levels import mos_to_level
from aesthetic_llm.params import Params
from aesthetic_llm.rehearsal.fault_server import NUMBERS_ANALYSES, VALID_ANALYSIS, FaultServer, image_key

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-test-DISTINCTIVE-9f3c7a1e5b"
FAST = {"backoff_base_s": 0.01, "backoff_max_s": 0.1, "progress_s": 0.5}


def make_manifest(dir_: Path, n: int, mos: list[float] | None = None) -> Path:
    rows = []
    for i in range(n):
        path = dir_ / "images" / f"img{i:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = (np.random.default_rng(i).random((24, 32, 3)) * 255).astype("uint8")
        Image.fromarray(pixels).save(path)
        rows.append({"image_id": f"img{i:03d}", "path": str(path), "mos": mos[i] if mos else round(1 + 9 * i / n, 3)})
    manifest = dir_ / "manifest.csv"
    write_csv(manifest, rows, ["image_id", "path", "mos"])
    return manifest


def files_containing(root: Path, needle: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


def cli(*args: str, key: str = KEY, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "OPENAI_API_KEY": key, "PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, str(ROOT / "scripts" / "annotate.py"), *args]
    return subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


# -- units ---------------------------------------------------------------------------------------
def test_validate_answer():
    ok, why = validate_answer(f"{VALID_ANALYSIS} Rating Level: 7", 7, 10)
    assert ok == f"{VALID_ANALYSIS} Rating Level: 7" and why == ""
    assert validate_answer("Nice light and colour.\nRating Level: 3.", 3, 10)[0] == (
        "Analysis: Nice light and colour. Rating Level: 3"
    )
    assert "requested 7" in validate_answer(f"{VALID_ANALYSIS} Rating Level: 6", 7, 10)[1]
    assert "number" in validate_answer("Analysis: a 7/10 photo. Rating Level: 7", 7, 10)[1]
    assert "end with" in validate_answer(VALID_ANALYSIS, 7, 10)[1]
    assert "end with" in validate_answer("Analysis: fine. Rating Level: 7 because it is nice", 7, 10)[1]
    assert "end with" in validate_answer("Analysis: fine. Rating Level: 11", 7, 10)[1]


# Real critiques quote camera settings, counts and years: none of these states the score.
ORDINARY_NUMBERS = [
    "Analysis: Taken in 2019 at ISO 3200, the grain is visible but the colours hold.",
    "Analysis: Shot at f/2.8 with an 85mm lens, one face is sharp and the other 4 figures blur.",
    "Analysis: A 1/250 s exposure freezes the 2 cyclists; the horizon sits on the rule of thirds.",
    "Analysis: The 16:9 frame in 4K shows 12 lanterns and three children at eye level.",
    "Analysis: The 1970s film look and the 24mm wide angle suit a street with 5 shop fronts.",
    "Analysis: At one point the light falls on two points of interest, a 3-point lighting setup.",
    "Analysis: The noise level at ISO 6400 is high and the camera is held level, 2 stops under.",
    "Analysis: 1/60 s at f/8 keeps the 3 boats sharp, giving it two distinct layers.",
    "Analysis: Two out of three windows are lit; the 1/10 s shutter blurs the water.",
    "Analysis: The colour grading of the 1990s gives a warm cast over the 20 rooftops of the 10th street.",
    "Analysis: A strong one: the 50mm view of 10 chairs in a row, a 2:3 crop and 7 people at the table.",
]
SCORE_LEAKS = [
    "Analysis: The score of 7 reflects the even light.",
    "Analysis: It is rated 7 for its even light.",
    "Analysis: A 7 out of 10 photo with even light.",
    "Analysis: The light is even and it deserves an 8.",
    "Analysis: The light is even, a level 6 picture.",
    "Analysis: The light is even, seven out of ten.",
    "Analysis: It earns 6.5 points for colour.",
    "Analysis: Viewers put it at MOS 5.8, with even light.",
    "Analysis: Weak detail, 3/10.",
    "Analysis: The colours are pleasant, overall a solid seven.",
    "Analysis: I would rate this a 6 for composition.",
    "Analysis: The colours are fine. Overall: 7.",
    "Analysis: The colours are fine.\n7\n",
    "Analysis: Exposure, sharpness and colour are all fine, 85/100.",
]


def test_validate_answer_keeps_ordinary_numbers_and_rejects_stated_scores():
    text = (
        "Analysis: Shot at f/1.8 with two people in frame, 3 windows behind them and a 1970s palette with a 35mm "
        "look; the focus is soft. Rating Level: 7"
    )
    assert validate_answer(text, 7, 10) == (text, "")
    critique, why = validate_answer("Analysis: I'd give it 7/10 for the colours. Rating Level: 7", 7, 10)
    assert critique is None and why == "analysis states a score-like number (N out of M form: '7/10')"
    # The level is still checked: ordinary numbers do not excuse a wrong or missing final level.
    assert validate_answer(f"{ORDINARY_NUMBERS[0]} Rating Level: 6", 7, 10) == (
        None,
        "answer gives level 6, requested 7",
    )
    assert "end with" in validate_answer(ORDINARY_NUMBERS[0], 7, 10)[1]


@pytest.mark.parametrize("analysis", ORDINARY_NUMBERS)
def test_ordinary_numbers_are_accepted(analysis):
    for level in (3, 7):
        assert validate_answer(f"{analysis} Rating Level: {level}", level, 10) == (
            f"{analysis} Rating Level: {level}",
            "",
        )
    assert score_leak(analysis) is None


@pytest.mark.parametrize("analysis", SCORE_LEAKS)
def test_stated_scores_are_rejected_with_a_reason(analysis):
    critique, why = validate_answer(f"{analysis} Rating Level: 7", 7, 10)
    assert critique is None
    assert why.startswith("analysis states a score-like number (") and why == score_leak(analysis)


def test_score_leak_names_the_offending_words():
    assert (
        score_leak("a score of about 7.5")
        == "analysis states a score-like number (number after a rating word: 'score of about 7.5')"
    )
    assert score_leak("twelve out of twenty", num_levels=20) == (
        "analysis states a score-like number (N out of M form: 'twelve out of twenty')"
    )
    assert score_leak("12/20 for colour", num_levels=20) is not None and score_leak("12/20 for colour") is None
    assert score_leak("the colours are fine. 7") == "analysis states a score-like number (bare number: '7')"


def test_load_log_truncates_torn_tail(tmp_path):
    log = tmp_path / "a.jsonl"
    log.write_text('{"a": 1}\n{"b": 2}\n{"c": ')
    rows, bad = load_log(log, repair=False)
    assert rows == [{"a": 1}, {"b": 2}] and bad == 1 and log.read_text().endswith('{"c": ')
    rows, bad = load_log(log)
    assert rows == [{"a": 1}, {"b": 2}] and log.read_text() == '{"a": 1}\n{"b": 2}\n'


def test_limiter_halves_on_429_bursts_and_creeps_back():
    lim = AdaptiveLimiter(16, burst=3, window_s=0.05)
    for _ in range(3):
        lim.on_rate_limited()
    assert lim.limit == 8 and lim.min_seen == 8
    lim.on_rate_limited()  # same burst: no second cut within the window
    assert lim.limit == 8
    for _ in range(200):
        lim.on_success()
    assert lim.limit == 16

    async def peak(limit: int) -> int:
        lim, seen = AdaptiveLimiter(limit), []

        async def job() -> None:
            async with lim:
                seen.append(lim.in_flight)
                await asyncio.sleep(0.01)

        await asyncio.gather(*(job() for _ in range(20)))
        return max(seen)

    assert asyncio.run(peak(4)) == 4


def test_cache_key_tracks_model_prompt_image_and_generation():
    cfg = ApiConfig(model="m")
    base = cache_key(cfg, "p", "sha")
    assert base == cache_key(ApiConfig(model="m", concurrency=3), "p", "sha")  # not a generation param
    others = [
        cache_key(ApiConfig(model="m2"), "p", "sha"),
        cache_key(cfg, "p2", "sha"),
        cache_key(cfg, "p", "sha2"),
        cache_key(ApiConfig(model="m", max_tokens=7), "p", "sha"),
        cache_key(ApiConfig(model="m", max_side=512), "p", "sha"),
    ]
    assert base not in others and len(set(others)) == len(others)
    assert Scrubber(KEY)(f"bad key {KEY}!") == "bad key ***!"


# -- acceptance ------------------------------------------------------------------------------------
def test_faulty_server_every_image_accounted_rerun_is_free_key_never_leaks(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    manifest = make_manifest(tmp_path / "in", 40)
    out_dir = tmp_path / "out"
    out = out_dir / "annotations.jsonl"
    msgs: list[str] = []
    faults = {"p_429": 0.15, "p_500": 0.10, "p_slow": 0.05, "p_malformed": 0.10, "p_drop": 0.05, "slow_s": 1.0}
    with FaultServer(api_key=KEY, **faults) as srv:
        cfg = ApiConfig(base_url=srv.url, model="gpt-4o-mini", concurrency=8, timeout_s=0.3, max_tries=10, **FAST)
        cfg = ApiConfig(**{**cfg.__dict__, "max_invalid": 4})
        items = load_items(manifest, cfg)
        s1 = annotate_api(items, out, cfg, emit=msgs.append)
        print(format_summary(s1, cfg.model))
        after_first = srv.snapshot()
        assert all(srv.faults[k] > 0 for k in ("429", "500", "slow", "malformed", "drop")), srv.faults
        s2 = annotate_api(load_items(manifest, cfg), out, cfg, emit=msgs.append)
        after_second = srv.snapshot()

    records = [json.loads(line) for line in out.read_text().splitlines()]
    failed = [json.loads(line) for line in failures_path(out).read_text().splitlines()]
    ids = [r["image_id"] for r in records]
    assert len(ids) == len(set(ids))
    assert sorted(ids + [f["image_id"] for f in failed]) == [it.image_id for it in items]
    assert all(f["reason"] for f in failed)
    for r in records:
        assert r["backend"] == "api" and r["model"] == "gpt-4o-mini" and r["prompt_version"]
        assert r["level"] == mos_to_level(r["mos"], 10)
        assert r["critique"].endswith(f"Rating Level: {r['level']}")
        assert not re.search(r"\d", r["critique"].split("Rating Level:")[0])
        assert r["usage"]["prompt_tokens"] > 0 and set(r["properties"]) >= {"brightness", "noise"}
    assert s1["done"] == len(records) and s1["failed"] == len(failed)
    assert s1["retries"]["429"] and s1["retries"]["5xx"] and s1["retries"]["timeout"] and s1["retries"]["invalid"]
    assert s1["retries"]["connection"]
    assert s1["cost_usd"] > 0 and s1["prompt_tokens"] > 0 and s1["completion_tokens"] > 0
    # Rerun: no request for an image that has an answer (only previously failed images may be retried).
    done_keys = {image_key(encode_image(r["path"], cfg.max_side)) for r in records}
    assert all(after_second[k] == after_first[k] for k in done_keys)
    assert s2["cached"] == len(records) and s2["done"] + s2["cached"] + s2["failed"] == 40
    if not failed:
        assert s2["requests"] == 0 and after_second == after_first
    # The key is nowhere: not on disk under the output dir, not in stdout/stderr, not in progress messages.
    captured = capsys.readouterr()
    assert not files_containing(out_dir, KEY)
    assert KEY not in captured.out + captured.err + "".join(msgs)


def test_answers_with_ordinary_numbers_are_kept_end_to_end(tmp_path, monkeypatch):
    """Against the real HTTP server: critiques quoting f-numbers, ISO, counts and years are all annotated (the
    digit check lost every one of them); stated scores ('7 out of 10') are still re-asked."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    manifest = make_manifest(tmp_path / "in", 40)
    out = tmp_path / "out" / "a.jsonl"
    with FaultServer(api_key=KEY, analyses=NUMBERS_ANALYSES, p_malformed=0.2) as srv:
        cfg = ApiConfig(base_url=srv.url, model="gpt-4o-mini", concurrency=4, max_invalid=8, **FAST)
        s = annotate_api(load_items(manifest, cfg), out, cfg, emit=lambda m: None)
        requests = srv.total
        again = annotate_api(load_items(manifest, cfg), out, cfg, emit=lambda m: None)
        assert srv.total == requests  # the cached critiques with numbers still validate: nothing is re-sent
    assert s["done"] == 40 and s["failed"] == 0 and failures_path(out).read_text() == ""
    assert s["retries"]["invalid"] > 0 and srv.faults["malformed"] == s["retries"]["invalid"]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 40
    for r in records:
        assert r["critique"] in {f"{a} Rating Level: {r['level']}" for a in NUMBERS_ANALYSES}
        assert re.search(r"\d", r["critique"].split("Rating Level:")[0])
        assert "out of 10" not in r["critique"]
    assert len({r["critique"].split(" Rating")[0] for r in records}) == len(NUMBERS_ANALYSES)
    assert again["cached"] == 40 and again["requests"] == 0


def test_kill_and_resume_never_resends_answered_images(tmp_path):
    manifest = make_manifest(tmp_path / "in", 40)
    out = tmp_path / "out" / "annotations.jsonl"
    env = {**os.environ, "OPENAI_API_KEY": KEY, "PYTHONPATH": str(ROOT / "src")}
    with FaultServer(api_key=KEY, latency_s=0.1) as srv:
        args = ["--manifest", str(manifest), "--out", str(out), "--base-url", srv.url, "--model", "gpt-4o-mini"]
        cmd = [sys.executable, str(ROOT / "scripts" / "annotate.py"), *args, "--concurrency", "2"]
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            if out.exists() and out.read_bytes().count(b"\n") >= 8:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        at_kill, _ = load_log(out, repair=False)
        assert 8 <= len(at_kill) < 40, "the run must be killed part-way"
        with out.open("a") as fh:  # a torn trailing line, as a kill in the middle of a write would leave
            fh.write('{"image_id": "img0')
        counts_at_kill = srv.snapshot()
        res = cli(*args, "--concurrency", "4")
        assert res.returncode == 0, res.stderr
        final = srv.snapshot()

    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["image_id"] for r in records) == [f"img{i:03d}" for i in range(40)]
    assert failures_path(out).read_text() == ""
    for r in at_kill:
        k = image_key(encode_image(r["path"], 768))
        assert final[k] == counts_at_kill[k] == 1, r["image_id"]
    summary = json.loads(res.stdout.splitlines()[-1])
    assert summary["cached"] == len({r["image_id"] for r in at_kill}) and summary["done"] == 40 - summary["cached"]


def test_wrong_key_is_one_line_401_without_the_key(tmp_path):
    manifest = make_manifest(tmp_path / "in", 4)
    out = tmp_path / "out" / "a.jsonl"
    with FaultServer(api_key="the-right-key") as srv:
        res = cli("--manifest", str(manifest), "--out", str(out), "--base-url", srv.url, "--model", "m")
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), res.stderr
    assert "401" in lines[0] and "authentication" in lines[0].lower()
    assert KEY not in res.stderr + res.stdout and not files_containing(tmp_path / "out", KEY)


def test_dry_run_sends_nothing(tmp_path):
    manifest = make_manifest(tmp_path / "in", 6)
    out = tmp_path / "out" / "a.jsonl"
    with FaultServer(api_key=KEY) as srv:
        args = ["--manifest", str(manifest), "--out", str(out), "--base-url", srv.url, "--model", "qwen-vl-plus"]
        res = cli(*args, "--dry-run")
        assert srv.total == 0
    assert res.returncode == 0, res.stderr
    assert "ESTIMATE" in res.stdout and "to request" in res.stdout and not out.exists()
    summary = json.loads(res.stdout.splitlines()[-1])
    assert summary["to_request"] == 6 and summary["est_cost_usd_max"] > 0


def test_max_cost_stops_cleanly_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    manifest = make_manifest(tmp_path / "in", 20, mos=[5.0] * 20)  # level 5: every answer costs the same
    out = tmp_path / "out" / "a.jsonl"
    completion = len(f"{VALID_ANALYSIS} Rating Level: 5") // 4
    prices = {"m": {"input": 0.0, "output": 1e6 / completion}}  # exactly $1 per answer
    with FaultServer(api_key=KEY, latency_s=0.05) as srv:
        cfg = ApiConfig(base_url=srv.url, model="m", concurrency=2, max_cost_usd=3.5, prices=prices, **FAST)
        s = annotate_api(load_items(manifest, cfg), out, cfg, emit=lambda m: None)
        assert srv.total == s["requests"] <= 4 + 2
        failed = [json.loads(line) for line in failures_path(out).read_text().splitlines()]
        assert "max cost" in s["stopped"] and 4 <= s["done"] <= 5 and s["done"] + len(failed) == 20
        assert 3.5 <= s["cost_usd"] <= 5.0 and all("max cost" in f["reason"] for f in failed)
        assert len(out.read_text().splitlines()) == s["done"]
        rest = annotate_api(load_items(manifest, cfg), out, ApiConfig(**{**cfg.__dict__, "max_cost_usd": 0.0}))
        assert (
            rest["cached"] == s["done"] and rest["done"] == 20 - s["done"] and srv.total == s["requests"] + rest["done"]
        )


def test_dvc_stage_backend_api(tmp_path, monkeypatch, repo_params):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    data_dir = tmp_path / "prepared"
    for split, n in (("train", 5), ("val", 3)):
        (data_dir / split).mkdir(parents=True)
        make_manifest(data_dir / split, n).rename(data_dir / split / "manifest.csv")
    with FaultServer(api_key=KEY, p_500=0.2) as srv:
        raw = {
            **repo_params,
            "data": {**repo_params["data"], "out_dir": str(data_dir)},
            "annotate": {
                "backend": "api",
                "splits": ["train", "val"],
                "out_dir": str(tmp_path / "annotations"),
                "api": {
                    "base_url": srv.url,
                    "model": "gpt-4o-mini",
                    "key_env": "OPENAI_API_KEY",
                    "cache": str(tmp_path / "cache" / "api.jsonl"),
                    "max_tries": 8,
                    "backoff_base_s": 0.01,
                },
            },
        }
        counts = annotate(Params(raw))
        assert counts == {"train": 5, "val": 3}
        requests = srv.total
        annotate(Params(raw))  # DVC reruns a stage from scratch: the cache outside its outs keeps it free
        assert srv.total == requests
    summary = json.loads((tmp_path / "annotations" / "summary.json").read_text())
    assert summary["backend"] == "api" and summary["counts"] == counts
    rec = json.loads((tmp_path / "annotations" / "train.jsonl").read_text().splitlines()[0])
    assert {"image_id", "path", "mos", "level", "critique", "properties", "backend", "prompt_version"} <= set(rec)
    raw["annotate"]["api"]["prompt_version"] = "v0"
    with pytest.raises(UserError, match="prompt_version"):
        annotate(Params(raw))
