"""scripts/rescore.py and crossfit_dpo.py (side_runs): params applied to the active profile, one-line errors."""

import subprocess
import sys

import pytest

from aesthetic_llm.errors import UserError
from aesthetic_llm.experiments.side_runs import with_overrides

from ..conftest import ROOT


def test_overrides_go_to_the_active_profile():
    demo = with_overrides({"profile": "demo", "score": {"mode": "cot"}}, ["score.mode=cot_sampled", "score.samples=4"])
    assert demo["score"] == {"mode": "cot_sampled", "samples": 4}
    paper = with_overrides({"profile": "paper", "score": {"mode": "cot"}}, ["score.samples=4"])
    assert paper["score"] == {"mode": "cot"} and paper["profiles"]["paper"]["score"] == {"samples": 4}
    with pytest.raises(UserError, match="expected key.path=value"):
        with_overrides({}, ["score.samples"])
    with pytest.raises(UserError, match="mode is not a section"):
        with_overrides({"score": {"mode": "cot"}}, ["score.mode.x=1"])


@pytest.mark.parametrize("script", ["rescore.py", "crossfit_dpo.py"])
def test_bad_params_file_fails_before_writing(tmp_path, script):
    bad = tmp_path / "params.yaml"
    bad.write_text("seed: [1,\n")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / script), "--params", str(bad), "--out-dir", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 2 and "invalid YAML" in proc.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "out").exists()
