"""Model families: each entry agrees with LLaMA-Factory, and a tiny checkpoint of each newer family goes
through LLaMA-Factory SFT (LoRA + merge, full), DPO and level-probability scoring, with the scoring prompt
token-identical to the training prompt and label scores equal to brute-force sequence log-probs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from aesthetic_llm.errors import UserError
from aesthetic_llm.model.families import FAMILIES, by_model_type, detect, resolve, strip_thinking
from aesthetic_llm.model.tiny_families import BUILDABLE, build_family_checkpoint
from aesthetic_llm.scoring.engine import LevelScorer
from aesthetic_llm.train.datasets import (
    DPO_DATASET,
    SFT_DATASET,
    SFT_VAL_DATASET,
    sft_records,
    write_dpo_dataset,
    write_sft_dataset,
)
from aesthetic_llm.train.settings import LoraSettings, PreferenceSettings, TrainSettings
from aesthetic_llm.train.stage import train_stage

from ..conftest import ROOT

DEMO_BASE = ROOT / "pretrained/tiny-qwen2vl-base"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("families")
    out = {name: root / name for name in BUILDABLE}
    for name, path in out.items():
        build_family_checkpoint(name, path, seed=0)
    return {"qwen2_vl": DEMO_BASE, **out}


def _images(n: int, seed: int = 3, size: tuple[int, int] = (90, 130)) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray((rng.random((*size, 3)) * 255).astype("uint8")) for _ in range(n)]


# -- the registry agrees with LLaMA-Factory -------------------------------------------------------------


@pytest.mark.parametrize("name", FAMILIES)
def test_family_matches_llamafactory_template_and_vision_registry(name):
    from llamafactory.data.template import TEMPLATES
    from llamafactory.model.model_utils.visual import COMPOSITE_MODELS

    family = FAMILIES[name]
    for template in filter(None, (family.template, family.thinking_template)):
        assert template in TEMPLATES, template
    lf = TEMPLATES[family.template]
    assert (lf.default_system or None) == family.system  # the scorer sends what training prepends
    assert family.end_of_turn in lf.stop_words
    for model_type in family.model_types:
        # LLaMA-Factory freezes the vision tower / projector and keeps LoRA off them by these keys.
        assert model_type in COMPOSITE_MODELS, model_type
    assert all(any(h.startswith(p) for p in family.hub_prefixes) for h in family.hub_ids)


def test_detect_reads_the_checkpoint_config_then_the_hub_name(checkpoints, tmp_path):
    for name, path in checkpoints.items():
        assert detect(path).name == name
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(checkpoints["internvl"])}))
    assert detect(adapter).name == "internvl"
    assert detect("Qwen/Qwen3-VL-8B-Instruct").name == "qwen3_vl"
    assert detect("OpenGVLab/InternVL3-8B-hf").name == "internvl"
    assert resolve("auto", checkpoints["qwen3_vl"]).template == "qwen3_vl_nothink"


def test_unsupported_or_contradicting_checkpoints_are_one_line_errors(checkpoints, tmp_path):
    other = tmp_path / "llava"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "llava"}))
    with pytest.raises(UserError, match=r"'llava' is not a supported family \(supported: qwen2_vl, qwen2_5_vl"):
        detect(other)
    with pytest.raises(UserError, match="unknown model family 'gemma'"):
        resolve("gemma", checkpoints["qwen2_vl"])
    with pytest.raises(UserError, match="is a qwen3_vl checkpoint"):
        resolve("internvl", checkpoints["qwen3_vl"])
    with pytest.raises(UserError, match="no config.json"):
        detect(tmp_path)
    with pytest.raises(UserError, match="not a supported family"):
        by_model_type("gemma3", "x")


def test_reasoning_block_is_skipped_when_reading_the_level():
    text = "<think>\nmaybe Rating Level: 2\n</think>\n\nAnalysis: sharp. Rating Level: 8"
    assert strip_thinking(text) == "Analysis: sharp. Rating Level: 8"
    assert LevelScorer.rating_prefix(text).endswith("sharp. Rating Level:")
    assert LevelScorer.rating_prefix("Analysis: ok. Rating Level: 3") == "Analysis: ok. Rating Level:"


# -- scoring prompt = training prompt, label scores = brute force ---------------------------------------


@pytest.mark.parametrize("name", ["qwen2_vl", *BUILDABLE])
def test_scoring_prompt_is_the_training_prompt_token_for_token(checkpoints, name):
    """LLaMA-Factory's template + multimodal plugin (what SFT/DPO train on) and the scorer's chat template +
    processor give the same prompt ids and the same pixel inputs for the same image."""
    from llamafactory.data import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments, ModelArguments
    from llamafactory.model import load_tokenizer

    path = checkpoints[name]
    loaded = load_tokenizer(ModelArguments(model_name_or_path=str(path), image_max_pixels=12544))
    tok, proc = loaded["tokenizer"], loaded["processor"]
    template = get_template_and_fix_tokenizer(tok, DataArguments(template=FAMILIES[name].template))
    scorer = LevelScorer(path, device="cpu")
    image = _images(1)[0]
    messages = [
        {"role": "user", "content": "<image>" + scorer.scheme.instruction},
        {"role": "assistant", "content": ""},
    ]
    messages = template.mm_plugin.process_messages(messages, [image], [], [], proc)
    prompt_ids, _ = template.encode_oneturn(tok, messages, None, None)
    prompt_ids, _ = template.mm_plugin.process_token_ids(prompt_ids, None, [image], [], [], tok, proc)
    enc = scorer._inputs([scorer.prompt()], [image])
    assert enc["input_ids"][0].tolist() == prompt_ids
    mm = template.mm_plugin.get_mm_inputs([image], [], [], [1], [0], [0], [prompt_ids], proc)
    assert torch.equal(mm["pixel_values"], enc["pixel_values"])


def _brute_force(scorer: LevelScorer, image: Image.Image, answer_prefix: str) -> torch.Tensor:
    """log p(label + end of turn | prompt + prefix): one uncached, unpadded forward per label."""
    enc = scorer._inputs([scorer.prompt() + answer_prefix], [image])
    n = enc["input_ids"].shape[1]
    out = []
    for cand in scorer.candidates:
        extra = torch.tensor([cand])
        inputs = dict(enc, input_ids=torch.cat([enc["input_ids"], extra], 1))
        inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
        if "mm_token_type_ids" in enc:
            inputs["mm_token_type_ids"] = torch.cat([enc["mm_token_type_ids"], torch.zeros_like(extra)], 1)
        if hasattr(scorer.model.model, "rope_deltas"):
            scorer.model.model.rope_deltas = None
        with torch.no_grad():
            lp = torch.log_softmax(scorer.model(**inputs).logits[0].float(), dim=-1)
        out.append(sum(lp[n - 1 + i, t].item() for i, t in enumerate(cand)))
    return torch.tensor(out)


@pytest.mark.parametrize("name", BUILDABLE)
def test_batched_label_scores_match_brute_force_with_padding(checkpoints, name):
    scorer = LevelScorer(checkpoints[name], device="cpu")
    ten, one = scorer.candidates[9], scorer.candidates[0]
    # " 10" is one token more than " 1" and starts like it: only whole sequences tell them apart.
    assert len(ten) == len(one) + 1 and ten[: len(one) - 1] == one[:-1] and ten[-1] == one[-1]
    images = _images(2)
    prefixes = ["Rating Level:", "Analysis: The exposure is well balanced. Rating Level:"]
    fast = scorer.label_logprobs(images, prefixes)
    for b in range(2):
        assert torch.allclose(fast[b], _brute_force(scorer, images[b], prefixes[b]), atol=1e-4)


# -- train → merge → score through real llamafactory-cli ------------------------------------------------


def _dataset(root: Path, n: int) -> list[dict]:
    """n annotated images with the demo critic's answer format."""
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, image in enumerate(_images(n, seed=11, size=(112, 112))):
        path = root / f"img{i}.png"
        image.save(path)
        level = 1 + i % 10
        critique = f"Analysis: the exposure is {'good' if level > 5 else 'poor'}. Rating Level: {level}"
        rows.append({"image_id": f"img{i}", "path": str(path), "level": level, "critique": critique})
    return rows


def _settings(stage: str, template: str, lora: bool) -> TrainSettings:
    recipe = "qwen2vl_full_sft.yaml" if stage == "sft" else "qwen2vl_full_dpo.yaml"
    return TrainSettings(
        stage=stage,
        config=ROOT / "llamafactory_configs/demo" / recipe,
        template=template,
        finetuning_type="lora" if lora else "full",
        learning_rate=1e-3 if stage == "sft" else 1e-4,
        num_train_epochs=1,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=1,
        select_checkpoint=False,
        lora=LoraSettings(8, 16, "all") if lora else None,
        preference=PreferenceSettings(0.1, "sigmoid", 0.0) if stage == "dpo" else None,
    )


def _vision_weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    weights = load_file(str(path / "model.safetensors"))
    keys = [k for k in weights if "visual" in k or "vision_tower" in k]
    assert keys
    return {k: weights[k] for k in keys}


@pytest.mark.parametrize("name", BUILDABLE)
def test_sft_lora_and_full_dpo_merge_and_score(checkpoints, tmp_path, name):
    base = checkpoints[name]
    template = resolve("auto", base).template
    rows = _dataset(tmp_path / "images", 8)
    sft_dir, dpo_dir = tmp_path / "sft_data", tmp_path / "dpo_data"
    write_sft_dataset(sft_dir, {SFT_DATASET: sft_records(rows, 10), SFT_VAL_DATASET: sft_records(rows[:4], 10)})
    pairs = [
        {
            "messages": r["messages"][:1],
            "chosen": r["messages"][1],
            "rejected": {"role": "assistant", "content": "Analysis: wrong. Rating Level: 5"},
            "images": r["images"],
        }
        for r in sft_records(rows, 10)
    ]
    write_dpo_dataset(dpo_dir, pairs)
    sft_data = {"dataset_dir": str(sft_dir), "dataset": SFT_DATASET, "eval_dataset": SFT_VAL_DATASET}
    models = {}
    for kind, lora in (("sft_lora", True), ("sft_full", False)):
        out = tmp_path / kind
        summary = train_stage(
            _settings("sft", template, lora), base, seed=0, out_dir=out, reports_dir=tmp_path / kind / "r",
            dataset=sft_data,
        )  # fmt: skip
        assert summary["steps"] == 2 and summary["finetuning_type"] == ("lora" if lora else "full")
        models[kind] = out
    # LLaMA-Factory knew the family's vision modules: frozen in full SFT, untouched by the merged LoRA.
    before = _vision_weights(base)
    for kind in ("sft_full", "sft_lora"):
        after = _vision_weights(models[kind])
        assert all(torch.equal(before[k], after[k]) for k in before), kind
    summary = train_stage(
        _settings("dpo", template, False), models["sft_full"], seed=0, out_dir=tmp_path / "dpo",
        reports_dir=tmp_path / "dpo" / "r", dataset={"dataset_dir": str(dpo_dir), "dataset": DPO_DATASET},
    )  # fmt: skip
    assert summary["steps"] == 2 and summary["train_loss"] > 0
    models["dpo"] = tmp_path / "dpo"
    images = [Image.open(r["path"]) for r in rows[:2]]
    for kind, path in models.items():
        assert detect(path).name == name, kind
        preds = LevelScorer(path, device="cpu").predict(images, mode="cot", max_new_tokens=12)
        for p in preds:
            assert abs(sum(p.probs) - 1) < 1e-5 and 1.0 <= p.score <= 10.0 and p.text.endswith("Rating Level:")


@pytest.mark.parametrize("name", BUILDABLE)
def test_score_images_cli_needs_no_family_flags(checkpoints, tmp_path, name):
    for i, image in enumerate(_images(2)):
        image.save(tmp_path / f"p{i}.png")
    out = tmp_path / "scores.csv"
    cmd = [sys.executable, str(ROOT / "scripts/score_images.py"), "--model", str(checkpoints[name]), str(tmp_path)]
    proc = subprocess.run(
        [*cmd, "--mode", "direct", "--csv", str(out)], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(out.read_text().strip().splitlines()) == 3
