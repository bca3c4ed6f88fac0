"""DPO pair strategies (near_level, far_level, on_policy, gold_vs_policy, cross_image), their statistics and the dpo_data script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from aesthetic_llm.critic import write_critique
from aesthetic_llm.errors import UserError
from aesthetic_llm.experiments.crossfit import source_folds
from aesthetic_llm.levels import parse_rating_level
from aesthetic_llm.measure import measure
from aesthetic_llm.train.datasets import (
    cross_image_pairs,
    far_level_pairs,
    gold_vs_policy_pairs,
    on_policy_pairs,
    pair_stats,
    source_group,
    split_for_dpo,
)

from ..conftest import ROOT


def _annotations(tmp: Path | None = None, n: int = 10) -> list[dict]:
    out = []
    for i in range(n):
        arr = (np.random.default_rng(i).random((56, 56, 3)) * 255 * (0.2 + 0.08 * i)).astype("uint8")
        img = Image.fromarray(arr)
        path = f"img{i}.png"
        if tmp is not None:
            img.save(tmp / path)
        props = measure(img)
        level = 1 + i % 10
        out.append(
            {
                "image_id": f"i{i}",
                "path": path,
                "mos": round(level + 0.1 * (i % 3), 3),
                "level": level,
                "critique": write_critique(props, level, 10),
                "properties": props.as_dict(),
            }
        )
    return out


def _check_record(r: dict) -> None:
    assert r["messages"][0]["role"] == "user" and r["messages"][0]["content"].count("<image>") == 1
    assert len(r["images"]) == 1 and r["chosen"]["role"] == r["rejected"]["role"] == "assistant"
    assert r["chosen"]["content"] != r["rejected"]["content"]


def test_far_level_pairs_are_at_least_min_gap_away():
    anns = _annotations()
    dropped: Counter = Counter()
    pairs = far_level_pairs(anns, 10, min_gap=4, per_image=2, seed=0, dropped=dropped)
    assert len(pairs) == 20 and not dropped
    for p in pairs:
        _check_record(p)
        true = parse_rating_level(p["chosen"]["content"], 10)
        wrong = parse_rating_level(p["rejected"]["content"], 10)
        assert abs(wrong - true) >= 4 and abs(wrong - true) == p["level_gap"]
        assert p["chosen"]["content"].split(" Overall")[0] == p["rejected"]["content"].split(" Overall")[0]
    # With 5 levels a middle level has nothing 4 away: dropped and counted.
    mid = [dict(anns[2], level=3, critique=write_critique(measure(Image.new("RGB", (8, 8))), 3, 5))]
    dropped = Counter()
    assert far_level_pairs(mid, 5, 4, 1, 0, dropped) == [] and dropped == {"no_level_far_enough": 1}


def test_on_policy_pairs_closest_vs_farthest_with_ties_and_unparseable_dropped():
    anns = [{"image_id": f"i{k}", "path": f"{k}.png", "level": 6, "critique": "x"} for k in range(4)]
    samples = {
        "i0": [("a Rating Level: 2", 2), ("b Rating Level: 6", 6), ("c", None), ("d Rating Level: 7", 7)],
        "i1": [("a Rating Level: 5", 5), ("b Rating Level: 7", 7)],  # both 1 away: a tie
        "i2": [("a", None), ("b Rating Level: 3", 3)],  # one parseable answer
        # i3 has no samples at all
    }
    dropped: Counter = Counter()
    pairs = on_policy_pairs(anns, samples, 10, dropped)
    assert len(pairs) == 1
    p = pairs[0]
    _check_record(p)
    assert p["chosen"]["content"] == "b Rating Level: 6" and p["rejected"]["content"] == "a Rating Level: 2"
    assert (p["chosen_error"], p["rejected_error"], p["level_gap"]) == (0, 4, 4)
    assert (p["chosen_signed_error"], p["rejected_signed_error"]) == (0, -4)  # the rejected answer is too low
    assert dropped == {
        "unparseable_answers": 2,
        "images_all_answers_tied": 1,
        "images_with_fewer_than_2_parseable": 2,
    }
    stats = pair_stats("on_policy", anns, pairs, dropped)
    assert stats["pairs"] == 1 and stats["images_without_pairs"] == 3 and stats["chosen_error_mean"] == 0
    assert stats["rejected_signed_error_mean"] == -4 and stats["rejected_too_high_share"] == 0


def test_gold_vs_policy_pairs_reject_the_farthest_sample_against_the_gold_critique():
    anns = [{"image_id": f"i{k}", "path": f"{k}.png", "level": 6, "critique": f"gold {k}"} for k in range(4)]
    samples = {
        "i0": [("a Rating Level: 5", 5), ("b Rating Level: 2", 2), ("c Rating Level: 9", 9)],
        "i1": [("a Rating Level: 6", 6), ("b Rating Level: 6", 6)],  # all right: nothing to correct
        "i2": [("a Rating Level: 7", 7), ("b no level", None)],  # unparseable counts as the farthest
        # i3 has no samples at all
    }
    dropped: Counter = Counter()
    pairs = gold_vs_policy_pairs(anns, samples, 10, dropped)
    assert [p["image_id"] for p in pairs] == ["i0", "i2"]
    for p in pairs:
        _check_record(p)
        assert p["chosen"]["content"] == f"gold {p['image_id'][1]}" and p["chosen_error"] == 0
    assert pairs[0]["rejected"]["content"] == "b Rating Level: 2" and pairs[0]["rejected_error"] == 4
    assert pairs[1]["rejected"]["content"] == "b no level" and pairs[1]["rejected_error"] == 10
    assert pairs[0]["rejected_signed_error"] == -4 and "rejected_signed_error" not in pairs[1]  # no level, no sign
    assert dropped == {"all_samples_right": 1, "no_samples": 1, "unparseable_rejected": 1}


def test_cross_image_pairs_show_one_image_and_reject_a_close_mos_neighbours_critique():
    anns = _annotations()
    dropped: Counter = Counter()
    pairs = cross_image_pairs(anns, 10, max_mos_gap=1.2, per_image=1, seed=0, dropped=dropped)
    by_id = {a["image_id"]: a for a in anns}
    assert pairs
    for p in pairs:
        _check_record(p)
        a, b = by_id[p["image_id"]], by_id[p["rejected_image_id"]]
        assert a is not b and p["images"] == [a["path"]]  # only the shown image is in the record
        assert p["chosen"]["content"] == a["critique"] and p["rejected"]["content"] == b["critique"]
        assert abs(a["mos"] - b["mos"]) <= 1.2 + 1e-9 and p["mos_gap"] == pytest.approx(abs(a["mos"] - b["mos"]))
        assert p["level_gap"] == abs(a["level"] - b["level"])
        # the nearest eligible neighbour was taken
        nearest = min(abs(a["mos"] - o["mos"]) for o in anns if o is not a and o["critique"] != a["critique"])
        assert p["mos_gap"] == pytest.approx(nearest, abs=1e-4)
    assert len(pairs) + sum(dropped.values()) == len(anns)
    # No neighbour close enough / only identical critiques: dropped with the reason.
    dropped = Counter()
    assert cross_image_pairs(anns[:2], 10, 0.01, 1, 0, dropped) == [] and dropped == {"no_partner_within_gap": 2}
    twin = [anns[0], dict(anns[0], image_id="twin")]
    dropped = Counter()
    assert cross_image_pairs(twin, 10, 1.0, 1, 0, dropped) == [] and dropped == {"identical_critiques_only": 2}


def _run_script(
    tmp: Path, params: dict, script: str = "make_dpo_data.py", out: str = "dpo"
) -> subprocess.CompletedProcess:
    (tmp / "params.yaml").write_text(yaml.safe_dump(params))
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    args = ["--seed", "0"] if script == "make_dpo_data.py" else ["--out", out]
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / script), *args],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _params(strategy: str, **dpo) -> dict:
    return {
        "profile": "demo",
        "seed": 0,
        "levels": {"num_levels": 10},
        "annotate": {"out_dir": "ann"},
        "sft": {"output_dir": "sft_model"},
        "score": {"max_new_tokens": 8, "batch_size": 4},
        "compute": {"threads": 2, "cpu_numerics": "vendor"},
        # the repo's dpo knobs, so a knob the code reads that params.yaml lacks fails here too
        "dpo": {
            **yaml.safe_load((ROOT / "params.yaml").read_text())["dpo"],
            "pair_strategy": strategy,
            "data_dir": "dpo",
            "level_offsets": [1, 2],
            "pairs_per_image": 1,
            **dpo,
        },
    }


@pytest.mark.parametrize("strategy", ["near_level", "far_level", "cross_image"])
def test_dpo_data_script_writes_dataset_and_pair_stats(tmp_path, strategy):
    (tmp_path / "ann").mkdir()
    anns = _annotations(tmp_path)
    (tmp_path / "ann/train.jsonl").write_text("".join(json.dumps(a) + "\n" for a in anns))
    proc = _run_script(tmp_path, _params(strategy, cross_max_mos_gap=1.5))
    assert proc.returncode == 0, proc.stderr
    stats = json.loads((tmp_path / "dpo/seed0/pair_stats.json").read_text())
    data = json.loads((tmp_path / "dpo/seed0/aesthetic_dpo.json").read_text())
    info = json.loads((tmp_path / "dpo/seed0/dataset_info.json").read_text())
    assert stats["strategy"] == strategy and stats["pairs"] == len(data) > 0 and stats["images"] == len(anns)
    assert sum(stats["level_gaps"].values()) == len(data) and info["aesthetic_dpo"]["ranking"] is True
    if strategy == "far_level":
        assert min(int(g) for g in stats["level_gaps"]) >= 4


@pytest.mark.slow
def test_gold_vs_policy_samples_from_the_sft_model(tmp_path, tiny_model_dir):
    """The same sampling path for self-play pairs: the random tiny model's answers carry no level, so every
    image gets a pair — its gold critique against one of its own (unparseable) samples."""
    (tmp_path / "ann").mkdir()
    anns = _annotations(tmp_path, n=3)
    (tmp_path / "ann/train.jsonl").write_text("".join(json.dumps(a) + "\n" for a in anns))
    (tmp_path / "sft_model").mkdir()
    (tmp_path / "sft_model/seed0").symlink_to(tiny_model_dir)
    proc = _run_script(tmp_path, _params("gold_vs_policy", on_policy_samples=2, on_policy_max_new_tokens=6))
    assert proc.returncode == 0, proc.stderr
    pairs = json.loads((tmp_path / "dpo/seed0/aesthetic_dpo.json").read_text())
    samples = {
        json.loads(line)["image_id"]: json.loads(line)["answers"]
        for line in (tmp_path / "dpo/seed0/on_policy_samples.jsonl").read_text().splitlines()
    }
    assert len(pairs) == 3
    for p, a in zip(pairs, anns, strict=True):
        assert p["chosen"]["content"] == a["critique"]
        assert p["rejected"]["content"] in [x["text"] for x in samples[a["image_id"]]]


def test_split_for_dpo_keeps_whole_source_photos_out_of_sft():
    anns = [{"image_id": f"train-{src}-{i:04d}"} for src in ("brick", "coffee", "horse", "moon") for i in range(3)]
    assert source_group("train-motorcycle-left-0012") == "motorcycle-left" and source_group("953417") == "953417"
    assert split_for_dpo(anns, 0.0, 0) == (anns, anns, [])
    sft, dpo, held = split_for_dpo(anns, 0.25, 0)
    assert len(held) == 1 and len(dpo) == 3 and len(sft) == 9
    assert {source_group(a["image_id"]) for a in dpo} == set(held)
    assert not {source_group(a["image_id"]) for a in sft} & set(held)
    assert split_for_dpo(anns, 0.25, 0) == (sft, dpo, held)  # seeded
    assert len(split_for_dpo(anns, 0.9, 0)[2]) == 3  # SFT always keeps at least one source
    with pytest.raises(UserError, match="dpo.sft_holdout"):
        split_for_dpo(anns[:3], 0.5, 0)  # one source cannot be split
    with pytest.raises(UserError, match=r"dpo.sft_holdout: 1.0 is not in \[0, 1\)"):
        split_for_dpo(anns, 1.0, 0)


def test_source_folds_partition_whole_source_photos():
    anns = [{"image_id": f"train-src{s}-{i:04d}"} for s in range(7) for i in range(2)]
    folds = source_folds(anns, 3, 0)
    flat = [g for f in folds for g in f]
    assert sorted(flat) == [f"src{s}" for s in range(7)] and len(set(flat)) == 7  # disjoint, complete
    assert sorted(len(f) for f in folds) == [2, 2, 3]
    assert source_folds(anns, 3, 0) == folds and source_folds(anns, 3, 1) != folds  # seeded
    for k in (1, 8):
        with pytest.raises(UserError, match=f"--folds {k}: need 2 <= folds <= 7"):
            source_folds(anns, k, 0)


def test_sft_and_dpo_data_use_disjoint_sources_with_a_holdout(tmp_path):
    (tmp_path / "ann").mkdir()
    anns = _annotations(tmp_path, n=12)
    for i, a in enumerate(anns):
        a["image_id"] = f"train-src{i % 4}-{i:04d}"
    (tmp_path / "ann/train.jsonl").write_text("".join(json.dumps(a) + "\n" for a in anns))
    proc = _run_script(tmp_path, _params("near_level", sft_holdout=0.5))
    assert proc.returncode == 0, proc.stderr
    sft_proc = _run_script(tmp_path, _params("near_level", sft_holdout=0.5), "make_sft_data.py", "sft")
    assert sft_proc.returncode == 0, sft_proc.stderr
    stats = json.loads((tmp_path / "dpo/seed0/pair_stats.json").read_text())
    held = set(stats["sft_holdout_sources"])
    dpo_ids = {r["image_id"] for r in json.loads((tmp_path / "dpo/seed0/aesthetic_dpo.json").read_text())}
    sft_ids = {r["image_id"] for r in json.loads((tmp_path / "sft/aesthetic_sft.json").read_text())}
    plain_ids = {r["image_id"] for r in json.loads((tmp_path / "sft/aesthetic_plain.json").read_text())}
    assert len(held) == 2 and stats["images"] == 6 and len(sft_ids) == 6
    assert {source_group(i) for i in dpo_ids} <= held and not {source_group(i) for i in sft_ids} & held
    assert plain_ids == {a["image_id"] for a in anns}  # the no-CoT baseline still sees every train label


def test_unknown_strategy_is_a_one_line_error(tmp_path):
    proc = _run_script(tmp_path, _params("random"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: params.yaml: dpo.pair_strategy: expected one of")


@pytest.mark.slow
def test_on_policy_samples_from_the_sft_model(tmp_path, tiny_model_dir):
    """The real sampling path on the tiny (random-init) model: k answers per image are drawn and logged; its
    answers carry no parseable level, so no pair can be built — a one-line error, with the drops counted."""
    (tmp_path / "ann").mkdir()
    anns = _annotations(tmp_path, n=3)
    (tmp_path / "ann/train.jsonl").write_text("".join(json.dumps(a) + "\n" for a in anns))
    (tmp_path / "sft_model").mkdir()
    (tmp_path / "sft_model/seed0").symlink_to(tiny_model_dir)
    proc = _run_script(tmp_path, _params("on_policy", on_policy_samples=3, on_policy_max_new_tokens=6))
    samples = [json.loads(line) for line in (tmp_path / "dpo/seed0/on_policy_samples.jsonl").read_text().splitlines()]
    assert [s["image_id"] for s in samples] == ["i0", "i1", "i2"] and all(len(s["answers"]) == 3 for s in samples)
    stats = json.loads((tmp_path / "dpo/seed0/pair_stats.json").read_text())
    unparsed = sum(a["level"] is None for s in samples for a in s["answers"])
    assert stats["dropped"].get("unparseable_answers", 0) == unparsed
    if stats["pairs"] == 0:
        assert proc.returncode == 2 and "no preference pairs" in proc.stderr.strip().splitlines()[-1]
    else:
        assert proc.returncode == 0, proc.stderr
