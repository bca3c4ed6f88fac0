import json

import numpy as np
import pytest
from PIL import Image

from aesthetic_llm.data.demo import SOURCES, degrade, source_path
from aesthetic_llm.data.manifest import SPLITS, manifest_path
from aesthetic_llm.data.prepare import prepare
from aesthetic_llm.data.splits import hard_pairs
from aesthetic_llm.errors import UserError
from aesthetic_llm.io_utils import read_csv
from aesthetic_llm.params import Params

from ..conftest import small_params


@pytest.fixture(scope="module")
def prepared(repo_params, tmp_path_factory):
    out = tmp_path_factory.mktemp("data")
    params = Params(small_params(repo_params, out), profile="demo")
    stats = prepare(params)
    return params, out / "prepared", stats


def test_every_source_photo_ships_with_an_installed_package():
    for src in SOURCES:
        with Image.open(source_path(src)) as im:
            assert min(im.size) >= 256


def test_photo_root_overrides_the_installed_packages(tmp_path, monkeypatch):
    src = SOURCES[0]
    copy = tmp_path / src.package / src.relpath
    copy.parent.mkdir(parents=True)
    copy.write_bytes(source_path(src).read_bytes())
    monkeypatch.setenv("DEMO_PHOTO_ROOT", str(tmp_path))
    assert source_path(src) == copy
    with pytest.raises(UserError, match=f"demo source {SOURCES[1].name}: .* is missing"):
        source_path(SOURCES[1])


def test_splits_are_disjoint_by_image_and_by_source_photo(prepared):
    _, out, stats = prepared
    by_split = {s: read_csv(manifest_path(out, s), required=("image_id", "path", "mos", "split")) for s in SPLITS}
    ids = [r["image_id"] for rows in by_split.values() for r in rows]
    assert len(ids) == len(set(ids))
    sources = {s: {r["source"] for r in rows} for s, rows in by_split.items()}
    for a in SPLITS:
        for b in SPLITS:
            if a < b:
                assert not sources[a] & sources[b], (a, b)
    assert stats["counts"]["train"] == 3 * len(stats["sources"]["train"])


def test_manifest_rows_are_consistent(prepared):
    params, out, _ = prepared
    rows = read_csv(manifest_path(out, "unseen"))
    unseen_kinds = set(params.list("data.unseen_degradations"))
    assert all(1.0 <= float(r["mos"]) <= 10.0 for r in rows)
    for split in ("train", "test"):
        for r in read_csv(manifest_path(out, split)):
            assert not set(json.loads(r["degradations"])) & unseen_kinds
            with Image.open(r["path"]) as im:
                assert im.size == (56, 56)


def test_hard_set_and_pairs(prepared):
    params, out, _ = prepared
    lo, hi = params.list("data.hard_band")
    test = {r["image_id"]: float(r["mos"]) for r in read_csv(manifest_path(out, "test"))}
    hard = read_csv(manifest_path(out, "hard"))
    assert {r["image_id"] for r in hard} == {i for i, m in test.items() if lo <= m <= hi}
    max_delta = params.num("data.hard_pair_max_delta")
    pairs = read_csv(out / "hard_pairs.csv")
    assert pairs and max(float(r["delta"]) for r in pairs) > max_delta / 2  # the threshold is the param's
    for r in pairs:
        assert 0 < abs(test[r["image_a"]] - test[r["image_b"]]) <= max_delta + 1e-9


def test_hard_pairs_brute_force():
    rng = np.random.default_rng(0)
    mos = list(np.round(rng.uniform(1, 10, 60), 2))
    ids = [f"i{k:02d}" for k in range(60)]
    expect = sorted(
        tuple(sorted((ids[a], ids[b]))) for a in range(60) for b in range(a + 1, 60) if 0 < abs(mos[a] - mos[b]) <= 0.2
    )
    assert [(a, b) for a, b, _ in hard_pairs(ids, mos, 0.2)] == expect


def test_same_seed_same_data(repo_params, prepared, tmp_path):
    params, out, _ = prepared
    again = prepare(Params(small_params(repo_params, tmp_path), profile="demo"))
    assert again["counts"] == prepared[2]["counts"]
    a = read_csv(manifest_path(out, "test"))
    b = read_csv(manifest_path(tmp_path / "prepared", "test"))
    assert [(r["image_id"], r["mos"]) for r in a] == [(r["image_id"], r["mos"]) for r in b]


def test_degradation_strength_is_monotone():
    from aesthetic_llm.measure import measure

    img = Image.open(source_path(SOURCES[2])).convert("RGB").resize((112, 112))
    rng = np.random.default_rng(0)
    sharp = [measure(degrade(img, "blur", s, rng)).sharpness for s in (0.0, 0.3, 0.7)]
    noise = [measure(degrade(img, "noise", s, np.random.default_rng(1))).noise for s in (0.0, 0.3, 0.7)]
    assert sharp[0] > sharp[1] > sharp[2]
    assert noise[0] < noise[1] < noise[2]
    with pytest.raises(UserError, match="unknown degradation"):
        degrade(img, "sepia", 0.5, rng)


def test_overlapping_split_sources_are_rejected(repo_params, tmp_path):
    p = small_params(repo_params, tmp_path)
    p["data"]["split_sources"]["val"] = ["chelsea"]
    with pytest.raises(UserError, match=r"\[.chelsea.\] listed in more than one split"):
        prepare(Params(p, profile="demo"))


def test_grey_photos_never_get_the_invisible_colour_degradation(prepared):
    from aesthetic_llm.data.demo import is_grayscale, load_sources

    _, out, _ = prepared
    grey = {name for name, views in load_sources().items() if all(is_grayscale(v) for v in views)}
    assert {"camera", "coins", "moon"} <= grey and "chelsea" not in grey
    for split in SPLITS:
        for r in read_csv(manifest_path(out, split)):
            if r["source"] in grey:
                assert "colour" not in json.loads(r["degradations"]), r["image_id"]
