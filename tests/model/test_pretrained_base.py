"""The demo's pre-trained base: the committed checkpoint is the one its record names, made by this code."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import yaml
from PIL import Image, ImageFilter

from aesthetic_llm.critic import rule_of_thumb_level
from aesthetic_llm.data.demo import degrade
from aesthetic_llm.measure import measure
from aesthetic_llm.model.corpus import build_corpus, damage_stats, region_stats
from aesthetic_llm.model.pretrain import RECORD_NAME, pretrain, verify_record

from ..conftest import ROOT


@pytest.fixture(scope="module")
def committed() -> tuple[dict, dict]:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    base = ROOT / params["base"]["out_dir"]
    return params, json.loads((base / RECORD_NAME).read_text())


def test_demo_points_at_the_committed_base(committed):
    params, _ = committed
    assert params["model"]["name_or_path"] == params["base"]["out_dir"]
    verify_record(ROOT / params["base"]["out_dir"])  # sha256 of the weights == the record's


def test_record_holds_the_config_that_produced_it(committed):
    params, record = committed
    cfg = dict(params["base"])
    cfg.pop("out_dir")
    recorded = {k: v for k, v in record["config"].items() if k in cfg}
    assert recorded == cfg, "params.yaml base.* changed since the committed base was made: run make base-model"
    assert record["config"]["num_levels"] == params["levels"]["num_levels"]
    held = {n for names in params["data"]["split_sources"].values() for n in names}
    assert record["config"]["train_sources"] and not held & set(record["config"]["train_sources"])
    final = record["final"]
    assert record["curve"] and final.get("vision_eval_region_r2", final.get("eval_region_r2")) > 0.5  # it sees


def test_verify_record_rejects_other_weights(tmp_path, committed):
    params, _ = committed
    copy = tmp_path / "base"
    shutil.copytree(ROOT / params["base"]["out_dir"], copy)
    data = bytearray((copy / "model.safetensors").read_bytes())
    data[-1] ^= 1
    (copy / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="sha256"):
        verify_record(copy)


def test_region_stats_follow_the_pixels():
    flat = Image.new("RGB", (112, 112), (128, 128, 128))
    stats = region_stats(flat)
    assert stats.shape == (16, 6)
    assert np.allclose(stats[:, 0], 128 / 255, atol=1e-3) and np.allclose(stats[:, 1:], 0, atol=1e-6)
    rng = np.random.default_rng(0)
    noisy = Image.fromarray(rng.integers(0, 256, (112, 112, 3), dtype=np.uint8))
    assert (region_stats(noisy)[:, 2] > 0.2).all()


def test_corpus_never_uses_scores_and_mixes_tasks():
    photo = Image.fromarray(np.random.default_rng(1).integers(0, 256, (160, 160, 3), dtype=np.uint8))
    images, answers, stats, whole, damage = build_corpus(
        [photo], 24, 56, seed=3, max_degradations=2, rate_fraction=0.5, num_levels=10
    )
    assert len(images) == len(answers) == stats.shape[0] == whole.shape[0] == 24
    rated = [a for rate, a in answers if rate]
    assert 0 < len(rated) < 24
    for img, (rate, answer) in zip(images, answers, strict=True):
        if rate:  # the rule of thumb from measurements, never a MOS
            assert answer.endswith(f"Rating Level: {rule_of_thumb_level(measure(img), 10)}")
        else:
            assert "Rating Level" not in answer


def test_damage_stats_are_zero_for_an_undamaged_crop_and_see_each_degradation():
    rng = np.random.default_rng(0)
    clean = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).filter(ImageFilter.SMOOTH)
    same = damage_stats(clean, clean)
    assert np.allclose(same[[0, 1, 2, 3, 4, 6, 7, 8, 9]], 0, atol=1e-6) and same[5] == pytest.approx(1.0)
    blurred = damage_stats(clean, degrade(clean, "blur", 0.8, rng))
    noisy = damage_stats(clean, degrade(clean, "noise", 0.8, rng))
    assert blurred[0] < -0.1 and blurred[5] < 0.9  # detail lost, structure changed
    assert noisy[4] > blurred[4] and noisy[0] > 0  # high-frequency residual, more gradient energy


@pytest.mark.parametrize("two_phase", [False, True], ids=["joint", "vision-then-captions"])
def test_pretrain_runs_and_records(tmp_path, tiny_model_dir, two_phase):
    photo = Image.fromarray(np.random.default_rng(2).integers(0, 256, (160, 160, 3), dtype=np.uint8))
    cfg = dict(
        seed=0,
        image_size=56,
        corpus_size=12,
        eval_size=4,
        max_degradations=1,
        rate_fraction=0.5,
        num_levels=10,
        steps=3,
        batch_size=4,
        learning_rate=1e-3,
        warmup_steps=1,
        weight_decay=0.0,
        aux_weight=1.0,
        eval_every=3,
    )
    if two_phase:
        cfg.update(vision_steps=2, vision_batch_size=4, vision_learning_rate=1e-3, damage_weight=1.0)
    record = pretrain(tiny_model_dir, tmp_path / "out", [photo], cfg, log=lambda _m: None)
    assert [p["step"] for p in record["curve"]] == [3]
    assert record["corpus"]["images"] == 12 and record["config"] == cfg
    if two_phase:  # phase 1 measured the statistics; phase 2 learned captions only (vision frozen)
        assert [p["step"] for p in record["vision_curve"]] == [2] and "eval_damage_r2" in record["vision_curve"][0]
        assert "eval_region_r2" not in record["curve"][0] and "vision_eval_region_r2" in record["final"]
    else:
        assert record["vision_curve"] == [] and "eval_region_r2" in record["curve"][0]
    verify_record(tmp_path / "out")
    from transformers import AutoModelForImageTextToText

    AutoModelForImageTextToText.from_pretrained(str(tmp_path / "out"))
