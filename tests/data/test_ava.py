"""Paper-profile data (AVA + AADB) on generated roots in the real file formats, with bad images and lines."""

from __future__ import annotations

import copy
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aesthetic_llm.data.ava import DEFAULT_SIZES
from aesthetic_llm.data.ava_labels import check_image, parse_ava
from aesthetic_llm.data.manifest import SPLITS, manifest_path
from aesthetic_llm.data.prepare import prepare
from aesthetic_llm.data.subset import allocate, scale_sizes, stratum
from aesthetic_llm.errors import UserError
from aesthetic_llm.io_utils import read_csv
from aesthetic_llm.params import Params

from ..conftest import ROOT

N_LINES = 60
CORRUPT = {7: "garbage", 23: "truncated"}  # 1-based AVA.txt line -> damage
MISSING = {41}
MALFORMED = 15
FIXTURE_SIZES = {"train": 36, "val": 10, "test": 10, "unseen": 1000}  # exactly the 56 good AVA images


def jpeg_bytes(rng: np.random.Generator, size: tuple[int, int] = (24, 16)) -> bytes:
    buf = io.BytesIO()
    Image.fromarray((rng.random((size[1], size[0], 3)) * 255).astype("uint8")).save(buf, "JPEG", quality=80)
    return buf.getvalue()


def vote_counts(rng: np.random.Generator) -> list[int]:
    """Votes around a random centre, so MOS spreads over the scale like AVA's (mostly 3–8)."""
    centre = rng.uniform(2.5, 8.5)
    p = np.exp(-0.5 * ((np.arange(1, 11) - centre) / rng.uniform(0.8, 2.0)) ** 2)
    return [int(c) for c in rng.multinomial(int(rng.integers(60, 300)), p / p.sum())]


def make_ava_root(root: Path, n: int = N_LINES, seed: int = 0, shuffle: bool = False) -> dict[str, float]:
    """Write AVA.txt + images/<id>.jpg (with the damage above); return {image_id: mos} of the good rows."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    lines, good = [], {}
    for k in range(1, n + 1):
        image_id = str(100000 + 37 * k)
        counts = vote_counts(rng)
        if k == MALFORMED:
            lines.append(f"{k} {image_id} {' '.join(map(str, counts[:9]))} 0 12\n")  # a count missing
            continue
        lines.append(f"{k} {image_id} {' '.join(map(str, counts))} {k % 7} {k % 5} {1000 + k}\n")
        data = jpeg_bytes(rng)
        if k in MISSING:
            continue
        if CORRUPT.get(k) == "garbage":
            data = b"\xff\xd8\xff\xe0 not really a jpeg" + bytes(200)
        elif CORRUPT.get(k) == "truncated":
            data = data[: len(data) // 2]
        else:
            good[image_id] = sum(i * c for i, c in enumerate(counts, 1)) / sum(counts)
        (root / "images" / f"{image_id}.jpg").write_bytes(data)
    if shuffle:  # same content, different line order: the subset must not change
        lines = [lines[i] for i in np.random.default_rng(99).permutation(len(lines))]
    (root / "AVA.txt").write_text("".join(lines))
    return good


def make_aadb_root(root: Path, n: int = 12, seed: int = 1) -> dict[str, float]:
    """AADB layout: label lists + originalSize/warp256 images; one listed image missing. Returns good {id: score}."""
    rng = np.random.default_rng(seed)
    (root / "imgListFiles_label").mkdir(parents=True)
    good = {}
    for which, folder, count in (("Test", None, n), ("Train", "datasetImages_originalSize", 5)):
        lines = []
        for k in range(count):
            name = f"farm1_{which.lower()}_{k:03d}_b.jpg"
            score = round(float(rng.uniform(0, 1)), 4)
            lines.append(f"{name} {score}\n")
            sub = folder or ("datasetImages_warp256" if k % 3 == 0 else "datasetImages_originalSize")
            if which == "Test" and k == 4:
                continue  # listed, not on disk
            (root / sub).mkdir(exist_ok=True)
            (root / sub / name).write_bytes(jpeg_bytes(rng))
            if which == "Test":
                good[f"aadb_{Path(name).stem}"] = score
        (root / "imgListFiles_label" / f"imgList{which}Regression_score.txt").write_text("".join(lines))
    return good


def ava_params(repo_params: dict, out: Path, ava_root: Path, **data) -> Params:
    p = copy.deepcopy(repo_params)
    p["data"].update(
        dataset="ava",
        ava_root=str(ava_root),
        out_dir=str(out),
        workers=2,
        subset_sizes={"train": 1500, "val": 10, "test": 10, "unseen": 1000},
    )
    p["data"].update(data)
    return Params(p, profile="demo")


def manifests(out: Path) -> dict[str, list[dict[str, str]]]:
    return {
        s: read_csv(manifest_path(out, s), required=("image_id", "path", "mos", "split")) for s in (*SPLITS, "hard")
    }


@pytest.fixture(scope="module")
def ava(tmp_path_factory, repo_params):
    tmp = tmp_path_factory.mktemp("ava")
    good = make_ava_root(tmp / "AVA")
    stats = prepare(ava_params(repo_params, tmp / "out", tmp / "AVA", subset_sizes=FIXTURE_SIZES))
    return tmp, good, stats


def test_acceptance_exactly_the_good_rows_with_exact_mos_and_every_problem_reported(ava):
    tmp, good, stats = ava
    rows = [r for s in ("train", "val", "test") for r in manifests(tmp / "out")[s]]
    assert len(rows) == len(good) == 56
    assert {r["image_id"] for r in rows} == set(good)
    for r in rows:
        assert abs(float(r["mos"]) - good[r["image_id"]]) < 1e-6
        assert int(r["votes"]) >= 60 and 0 < float(r["vote_std"]) < 5
        assert Path(r["path"]).is_file()
    skipped = {p["line"]: p for p in stats["skipped"]}
    assert set(skipped) == {MALFORMED, *CORRUPT, *MISSING}
    assert skipped[MALFORMED]["kind"] == "malformed" and "15 fields" in skipped[MALFORMED]["reason"]
    assert skipped[MALFORMED]["file"].endswith("AVA.txt")
    assert {skipped[k]["kind"] for k in CORRUPT} == {"corrupt"}
    assert "truncated" in skipped[23]["reason"].lower()
    assert skipped[41]["kind"] == "missing"
    assert stats["skipped_by_kind"] == {"corrupt": 2, "malformed": 1, "missing": 1}
    on_disk = json.loads((tmp / "out" / "stats.json").read_text())
    assert on_disk["skipped_total"] == 4 and on_disk["counts"]["train"] == 56 - 20
    assert on_disk["scaled_subsets"] is None and on_disk["shortfall"] == {"unseen": 1000}
    assert on_disk["throughput"]["images_per_s"] > 0 and on_disk["throughput"]["workers"] == 2
    assert sum(sum(h) for s, h in on_disk["mos_histogram"].items() if s in ("train", "val", "test")) == 56


def test_splits_are_disjoint_and_the_same_seed_gives_the_same_subset(ava, repo_params, tmp_path):
    tmp, good, _ = ava
    first = manifests(tmp / "out")
    ids = [r["image_id"] for s in SPLITS for r in first[s]]
    assert len(ids) == len(set(ids))
    assert {r["image_id"] for r in first["hard"]} <= {r["image_id"] for r in first["test"]}
    # Same seed, lines in another order, another directory: the same subsets.
    make_ava_root(tmp_path / "AVA", shuffle=True)
    prepare(
        ava_params(repo_params, tmp_path / "again", tmp_path / "AVA", subset_sizes={"train": 20, "val": 10, "test": 10})
    )
    again = manifests(tmp_path / "again")
    for split in ("val", "test"):
        assert [(r["image_id"], r["mos"]) for r in again[split]] == [(r["image_id"], r["mos"]) for r in first[split]]
    assert len(again["train"]) == 20
    assert {r["image_id"] for r in again["train"]} <= {r["image_id"] for r in first["train"]}
    p = copy.deepcopy(repo_params)
    p["seed"] = 7
    prepare(ava_params(p, tmp_path / "seed7", tmp_path / "AVA", subset_sizes=FIXTURE_SIZES))
    assert {r["image_id"] for r in manifests(tmp_path / "seed7")["test"]} != {r["image_id"] for r in first["test"]}


def test_hard_set_and_pairs_come_from_the_test_split(ava, repo_params):
    tmp, _, stats = ava
    lo, hi = repo_params["data"]["hard_band"]
    m = manifests(tmp / "out")
    test = {r["image_id"]: float(r["mos"]) for r in m["test"]}
    assert {r["image_id"] for r in m["hard"]} == {i for i, v in test.items() if lo <= v <= hi}
    pairs = read_csv(tmp / "out" / "hard_pairs.csv")
    assert len(pairs) == stats["hard_pairs"]
    for r in pairs:
        assert 0 < abs(test[r["image_a"]] - test[r["image_b"]]) <= repo_params["data"]["hard_pair_max_delta"] + 1e-9


def test_subsets_are_mos_stratified():
    assert allocate(10, [50, 30, 20]) == [5, 3, 2]
    assert allocate(7, [1, 1, 1]) == [1, 1, 1]
    assert allocate(4, [3, 3, 3]) == [2, 1, 1]  # largest remainder, ties to the lower stratum
    assert sum(allocate(1000, [7, 900, 12000, 40000, 3])) == 1000
    assert [stratum(m, 9) for m in (1.0, 1.99, 2.0, 5.5, 10.0)] == [0, 0, 1, 4, 8]


def test_official_test_list_selects_the_test_split(tmp_path, repo_params):
    good = make_ava_root(tmp_path / "AVA")
    listed = sorted(good)[::3]
    (tmp_path / "AVA" / "generic_test.jpgl").write_text("".join(f"{i}\n" for i in listed))
    prepare(ava_params(repo_params, tmp_path / "out", tmp_path / "AVA", ava_test_list="generic_test.jpgl"))
    m = manifests(tmp_path / "out")
    assert {r["image_id"] for r in m["test"]} <= set(listed) and len(m["test"]) == 10
    assert not {r["image_id"] for s in ("train", "val") for r in m[s]} & set(listed)


def test_aadb_official_test_is_unseen_on_the_1_to_10_scale(tmp_path, repo_params):
    make_ava_root(tmp_path / "AVA")
    good = make_aadb_root(tmp_path / "AADB")
    stats = prepare(ava_params(repo_params, tmp_path / "out", tmp_path / "AVA", aadb_root=str(tmp_path / "AADB")))
    unseen = manifests(tmp_path / "out")["unseen"]
    assert {r["image_id"] for r in unseen} == set(good)
    for r in unseen:
        assert abs(float(r["mos"]) - (1 + 9 * good[r["image_id"]])) < 1e-9 and r["source"] == "aadb"
    assert stats["aadb_mos_mapping"] == "mos = 1 + 9 * score"
    assert any(p["source"] == "aadb" and p["kind"] == "missing" and p["line"] == 5 for p in stats["skipped"])
    assert stats["dataset"] == "ava+aadb" and stats["sources"]["unseen"] == ["aadb"]


def test_missing_root_or_label_file_is_a_one_line_error(tmp_path, repo_params):
    with pytest.raises(UserError, match=r"data\.ava_root: .*nowhere does not exist"):
        prepare(ava_params(repo_params, tmp_path / "out", tmp_path / "nowhere"))
    (tmp_path / "AVA").mkdir()
    with pytest.raises(UserError, match=r"AVA\.txt: AVA label file not found"):
        prepare(ava_params(repo_params, tmp_path / "out", tmp_path / "AVA"))
    make_ava_root(tmp_path / "AVA2")
    (tmp_path / "AADB").mkdir()
    with pytest.raises(UserError, match=r"imgListTestRegression_score\.txt: AADB label file not found"):
        prepare(ava_params(repo_params, tmp_path / "out", tmp_path / "AVA2", aadb_root=str(tmp_path / "AADB")))


def test_parser_reports_bad_lines_and_streams(tmp_path):
    labels = tmp_path / "AVA.txt"
    labels.write_text(
        "1 11 0 0 0 1 2 3 2 1 0 0 0 0 1\n"
        "2 12 0 0 x 1 2 3 2 1 0 0 0 0 1\n"
        "\n"
        "4 13 0 0 0 0 0 0 0 0 0 0 0 0 1\n"
        "5 11 0 0 0 1 2 3 2 1 0 0 0 0 1\n"
        "6 ../x 0 0 0 1 2 3 2 1 0 0 0 0 1\n"
    )
    recs = list(parse_ava(labels, tmp_path / "images"))
    assert abs(recs[0].mos - (4 + 10 + 18 + 14 + 8) / 9) < 1e-12 and recs[0].votes == 9
    assert [(r["line"], r["kind"]) for r in recs[1:]] == [
        (2, "malformed"),
        (4, "malformed"),
        (5, "duplicate"),
        (6, "malformed"),
    ]


def test_check_image_decodes_fully(tmp_path):
    data = jpeg_bytes(np.random.default_rng(0), (64, 48))
    (tmp_path / "ok.jpg").write_bytes(data)
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.jpg").write_bytes(b"GIF89a" + bytes(50))
    assert check_image(str(tmp_path / "ok.jpg")) is None
    assert check_image(str(tmp_path / "cut.jpg")).startswith("corrupt: image file is truncated")
    assert check_image(str(tmp_path / "junk.jpg")).startswith("corrupt:")
    assert check_image(str(tmp_path / "none.jpg")).startswith("missing:")


def test_validate_all_audits_every_image(tmp_path, repo_params):
    make_ava_root(tmp_path / "AVA")
    sizes = {"train": 5, "val": 0, "test": 5, "unseen": 0}
    stats = prepare(
        ava_params(repo_params, tmp_path / "out", tmp_path / "AVA", subset_sizes=sizes, validate_all=True, workers=1)
    )
    assert stats["throughput"]["validated_images"] >= N_LINES - 1
    assert stats["skipped_by_kind"] == {"corrupt": 2, "malformed": 1, "missing": 1}
    assert stats["counts"]["train"] == 5 and stats["counts"]["test"] == 5


def test_cli_ava_subcommand(tmp_path):
    good = make_ava_root(tmp_path / "AVA")
    script = ROOT / "scripts" / "prepare_data.py"
    args = [sys.executable, str(script), "ava", "--params", str(ROOT / "params.yaml"), "--root", str(tmp_path / "AVA")]
    res = subprocess.run(
        [*args, "--out", str(tmp_path / "out"), "--val", "5", "--test", "8", "--train", "43", "--workers", "1"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    counts = json.loads(res.stdout.strip().splitlines()[-1])
    assert (counts["test"], counts["val"], counts["train"]) == (8, 5, len(good) - 13)
    bad = subprocess.run(
        [*args[:-1], str(tmp_path / "nope"), "--out", str(tmp_path / "o2")], capture_output=True, text=True
    )
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and bad.stderr.startswith("error: ")


# -- fewer valid images than the subsets ask for ---------------------------------------------------------
def test_scale_sizes_is_proportional_with_one_image_per_split():
    assert scale_sizes({"test": 1000, "val": 300, "train": 1500}, 56) == {"test": 20, "val": 6, "train": 30}
    assert scale_sizes({"test": 10, "val": 10, "train": 1500}, 56) == {"test": 1, "val": 1, "train": 54}
    assert scale_sizes({"test": 5, "val": 0, "train": 5}, 3) == {"test": 2, "val": 0, "train": 1}  # 0 stays 0
    assert scale_sizes({"test": 1000, "val": 300, "train": 1500}, 3) == {"test": 1, "val": 1, "train": 1}
    assert scale_sizes({"test": 8, "val": 5, "train": 43}, 56) == {"test": 8, "val": 5, "train": 43}  # fits
    for n in range(3, 200, 7):
        got = scale_sizes({"test": 1000, "val": 300, "train": 1500}, n)
        assert sum(got.values()) == n and min(got.values()) >= 1 and got["train"] >= got["test"] >= got["val"]
    with pytest.raises(ValueError, match="2 image"):
        scale_sizes({"test": 1000, "val": 300, "train": 1500}, 2)


def test_small_root_with_default_sizes_fills_every_split_in_proportion(tmp_path, repo_params, capsys):
    good = make_ava_root(tmp_path / "AVA")
    assert len(good) == 56
    sizes = dict(DEFAULT_SIZES)
    assert sizes == {"train": 1500, "val": 300, "test": 1000, "unseen": 1000}
    stats = prepare(ava_params(repo_params, tmp_path / "out", tmp_path / "AVA", subset_sizes=sizes))
    m = manifests(tmp_path / "out")
    counts = {s: len(m[s]) for s in ("test", "val", "train")}
    assert counts == {"test": 20, "val": 6, "train": 30}  # 56 * 1000:300:1500 / 2800
    assert {r["image_id"] for s in counts for r in m[s]} == set(good)
    assert {r["image_id"] for r in m["hard"]} <= {r["image_id"] for r in m["test"]}
    err = [line for line in capsys.readouterr().err.splitlines() if "scaled" in line]
    assert len(err) == 1, err
    assert str(tmp_path / "AVA" / "AVA.txt") in err[0] and "56 valid images" in err[0]
    assert "test=1000 val=300 train=1500 requested" in err[0] and "using test=20 val=6 train=30" in err[0]
    on_disk = json.loads((tmp_path / "out" / "stats.json").read_text())
    scaled = on_disk["scaled_subsets"]
    assert scaled["requested"] == {"test": 1000, "val": 300, "train": 1500}
    assert scaled["used"] == {"test": 20, "val": 6, "train": 30}
    assert scaled["available"] == {"test+val+train": 56} and "fewer valid images" in scaled["reason"]
    assert on_disk["subset_sizes"] == sizes and on_disk["counts"]["train"] == 30
    assert on_disk["shortfall"] == {"train": 1470, "val": 294, "test": 980, "unseen": 1000}
    assert stats["skipped_by_kind"] == {"corrupt": 2, "malformed": 1, "missing": 1}  # every problem still reported


def test_bad_images_found_late_rescale_instead_of_emptying_train(tmp_path, repo_params):
    """59 candidates for 59 requested, 3 of them bad: only train's draw runs out, and the sizes are rescaled."""
    make_ava_root(tmp_path / "AVA")
    sizes = {"train": 4, "val": 5, "test": 50, "unseen": 0}
    stats = prepare(ava_params(repo_params, tmp_path / "out", tmp_path / "AVA", subset_sizes=sizes))
    assert {s: stats["counts"][s] for s in ("test", "val", "train")} == {"test": 47, "val": 5, "train": 4}
    assert stats["scaled_subsets"]["used"] == {"test": 47, "val": 5, "train": 4}
    assert stats["skipped_by_kind"] == {"corrupt": 2, "malformed": 1, "missing": 1}
    assert stats["throughput"]["validated_images"] == 59  # the second pass decodes nothing again


def test_official_test_list_keeps_test_and_scales_only_val_and_train(tmp_path, repo_params, capsys):
    good = make_ava_root(tmp_path / "AVA")
    listed = sorted(good)[::3]
    (tmp_path / "AVA" / "generic_test.jpgl").write_text("".join(f"{i}.jpg\n" for i in listed))
    p = ava_params(
        repo_params,
        tmp_path / "out",
        tmp_path / "AVA",
        subset_sizes=dict(DEFAULT_SIZES),
        ava_test_list="generic_test.jpgl",
    )
    stats = prepare(p)
    m = manifests(tmp_path / "out")
    assert {r["image_id"] for r in m["test"]} == set(listed) and len(listed) == 19
    rest = 56 - 19  # 37 over val:train = 300:1500 -> 6.17 : 30.83
    assert (len(m["val"]), len(m["train"])) == (6, 31) and rest == 6 + 31
    assert not {r["image_id"] for s in ("train", "val") for r in m[s]} & set(listed)
    scaled = stats["scaled_subsets"]
    assert scaled["used"] == {"test": 19, "val": 6, "train": 31}
    assert scaled["available"] == {"test (official test list)": 19, "val+train": 37}
    assert len([line for line in capsys.readouterr().err.splitlines() if "scaled" in line]) == 1
    (tmp_path / "AVA" / "generic_test.jpgl").write_text("999999999\n")  # lists no image of AVA.txt
    with pytest.raises(UserError, match=r"generic_test\.jpgl: no valid AVA image .* the test split would be empty"):
        prepare(p)


def test_fewer_images_than_splits_is_a_one_line_error(tmp_path, repo_params):
    assert len(make_ava_root(tmp_path / "AVA", n=2)) == 2
    with pytest.raises(UserError, match=r"AVA\.txt: only 2 valid AVA image\(s\) for 3 splits .*at least one"):
        prepare(ava_params(repo_params, tmp_path / "out", tmp_path / "AVA", subset_sizes=dict(DEFAULT_SIZES)))
    script = ROOT / "scripts" / "prepare_data.py"
    res = subprocess.run(
        [sys.executable, str(script), "ava", "--params", str(ROOT / "params.yaml"), "--root", str(tmp_path / "AVA")]
        + ["--out", str(tmp_path / "cli"), "--workers", "1", "--train", "1500", "--val", "300", "--test", "1000"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and res.stderr.startswith("error: "), res.stderr
    assert str(tmp_path / "AVA" / "AVA.txt") in res.stderr and "only 2 valid AVA image(s) for 3 splits" in res.stderr
    assert "test=1000 val=300 train=1500 requested" in res.stderr and not (tmp_path / "cli" / "stats.json").exists()
