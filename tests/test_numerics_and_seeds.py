"""Pinned CPU numerics, training seeds in params, and the seed x photo x crop bootstrap's building blocks."""

import os
import subprocess
import sys

import numpy as np
import pytest

from aesthetic_llm.errors import UserError
from aesthetic_llm.evaluation.seed_bootstrap import mean_over_drawn, pair_weights, resample_indices, srcc_rows
from aesthetic_llm.numerics import CPU_NUMERICS, numerics_env
from aesthetic_llm.params import Params, set_seeds, training_seeds

from .conftest import ROOT


def test_numerics_env_pins_kernels_blas_branch_and_threads():
    portable = numerics_env("portable", 2)
    assert portable == {
        "OMP_NUM_THREADS": "2",
        "MKL_NUM_THREADS": "2",
        "ATEN_CPU_CAPABILITY": "avx2",
        "MKL_CBWR": "COMPATIBLE",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
    }
    assert numerics_env("vendor", 3)["MKL_CBWR"] == "AVX2" and numerics_env("native", 1) == {
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    with pytest.raises(UserError, match="compute.cpu_numerics: 'fast' is not one of portable, vendor, native"):
        numerics_env("fast", 2)
    with pytest.raises(UserError, match="compute.threads"):
        numerics_env("vendor", 0)


_PROBE = """
import json, os, sys
sys.path.insert(0, {src!r})
from aesthetic_llm.numerics import pin, fingerprint
pin({mode!r}, 1)
import torch
torch.ones(3).sum()
print(json.dumps(fingerprint()))
"""


@pytest.mark.parametrize("mode", CPU_NUMERICS)
def test_pin_takes_effect_in_a_fresh_process_and_is_recorded(mode):
    env = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA")}
    code = _PROBE.format(src=str(ROOT / "src"), mode=mode)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    import json

    fp = json.loads(out.stdout.strip().splitlines()[-1])
    assert fp["threads"] == 1 and fp["env"]["OMP_NUM_THREADS"] == "1"
    if mode == "native":
        assert "ATEN_CPU_CAPABILITY" not in fp["env"]
    else:
        assert fp["cpu_capability"] == "AVX2" and fp["env"]["MKL_CBWR"] in ("AVX2", "COMPATIBLE")
    assert fp["torch"] and fp["cpu"]["machine"]


def test_pin_refuses_once_tensors_ran_on_other_kernels():
    code = (
        f"import sys; sys.path.insert(0, {str(ROOT / 'src')!r})\n"
        "import torch; torch.ones(3).sum()\n"
        "from aesthetic_llm.numerics import pin\n"
        "cap = torch.backends.cpu.get_cpu_capability()\n"
        "try:\n    pin('vendor', 1)\nexcept Exception as e:\n    print('refused', e)\nelse:\n    print('ok', cap)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    # On an AVX2-only CPU the native kernels are already AVX2: nothing to refuse.
    assert out.startswith("refused") and "already runs" in out or out.strip() == "ok AVX2"


def test_training_seeds_and_set_seeds(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("profile: demo\nseed: 7\nseeds: [42, 43, 44]   # training seeds\nx: 1\n")
    assert training_seeds(Params.load(path)) == [42, 43, 44]
    assert set_seeds(path, 5) == [42, 43, 44, 45, 46]
    assert path.read_text() == "profile: demo\nseed: 7\nseeds: [42, 43, 44, 45, 46]   # training seeds\nx: 1\n"
    for bad in ("[]", "[1, 1]", "[1.5]", "3"):
        path.write_text(f"profile: demo\nseeds: {bad}\n")
        with pytest.raises(UserError, match="seeds: expected"):
            training_seeds(Params.load(path))
    with pytest.raises(UserError, match="SEEDS=0"):
        set_seeds(path, 0)


def test_cluster_resampling_draws_whole_photos_then_crops_within_them():
    labels = ["a"] * 4 + ["b"] * 4 + ["c"] * 4
    idx = resample_indices(labels, 300, np.random.default_rng(0))
    assert idx.shape == (300, 12)
    groups = np.array(labels)[idx]
    # each replicate is 3 drawn photos of 4 crops each: photo counts are multiples of 4
    for row in groups:
        counts = {g: int((row == g).sum()) for g in "abc"}
        assert all(c % 4 == 0 for c in counts.values()) and sum(counts.values()) == 12
    assert any(len(set(row)) == 1 for row in groups)  # a replicate of one photo drawn three times


def test_rowwise_srcc_matches_scipy_and_seed_means():
    from scipy import stats

    rng = np.random.default_rng(1)
    pred, mos = np.round(rng.normal(size=(5, 30)), 1), rng.normal(size=(5, 30))
    want = [stats.spearmanr(p, m).statistic for p, m in zip(pred, mos, strict=True)]
    assert srcc_rows(pred, mos) == pytest.approx(want, abs=1e-12)
    per_seed = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    assert mean_over_drawn(per_seed, np.array([[0, 0, 2], [1, 1, 1]])).tolist() == [5 / 3, 5.0]
    w = pair_weights(np.array([[0, 0, 1], [2, 2, 2]]), 3, np.array([0, 1]), np.array([1, 2]))
    assert w.tolist() == [[2, 0], [0, 0]]
