"""A NAMED STAND-IN for the published Q-Align / OneAlign checkpoints (hub-only 7B mPLUG-Owl2 models).

`build_standin(dir)` saves a tiny remote-code checkpoint (`StandInScorer`, not Q-Align) that loads through the
same `AutoModelForCausalLM.from_pretrained(..., trust_remote_code=True)` call as the published ones and exposes
the same `score(images, task_=, input_=)` interface; its score is the image's mean brightness on 1-5. Used by
tests/test_published_qalign.py and by the paper rehearsal (`make rehearse`), so the published_qalign stage's
real run-or-skip logic and its worker run without the hub.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

MODULE = "standin_scorer"

STANDIN_CODE = '''
import torch
from transformers import PretrainedConfig, PreTrainedModel


class StandInConfig(PretrainedConfig):
    model_type = "standin_scorer"


class StandInScorer(PreTrainedModel):
    """NOT Q-Align: a stand-in with the published checkpoints' loading path and score() interface."""

    config_class = StandInConfig

    def __init__(self, config):
        super().__init__(config)
        self.gain = torch.nn.Parameter(torch.ones(1))
        self.post_init()

    def score(self, images, task_="quality", input_="image"):
        assert task_ == "aesthetics" and input_ == "image"
        means = [sum(im.convert("L").getdata()) / (255.0 * im.width * im.height) for im in images]
        return 1 + 4 * self.gain * torch.tensor(means)
'''


def build_standin(out: Path) -> Path:
    """Write the stand-in checkpoint (code, config with auto_map, weights) into `out`; returns `out`."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{MODULE}.py").write_text(STANDIN_CODE, encoding="utf-8")
    sys.path.insert(0, str(out))
    try:
        import standin_scorer  # the file just written

        model = standin_scorer.StandInScorer(standin_scorer.StandInConfig())
        model.save_pretrained(out)
    finally:
        sys.path.remove(str(out))
        sys.modules.pop(MODULE, None)
    cfg = json.loads((out / "config.json").read_text(encoding="utf-8"))
    cfg["auto_map"] = {
        "AutoConfig": f"{MODULE}.StandInConfig",
        "AutoModelForCausalLM": f"{MODULE}.StandInScorer",
    }
    (out / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    return out
