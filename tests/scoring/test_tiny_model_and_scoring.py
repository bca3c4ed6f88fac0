"""The demo model loads like a hub checkpoint, and level scoring matches brute-force sequence log-probs."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from aesthetic_llm.scoring.engine import LevelScorer

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def scorer(tiny_model_dir):
    return LevelScorer(tiny_model_dir, num_levels=10, device="cpu")


def _images(n: int) -> list[Image.Image]:
    rng = np.random.default_rng(3)
    return [Image.fromarray((rng.random((56, 56, 3)) * 255).astype("uint8")) for _ in range(n)]


def test_loads_through_auto_classes_like_a_hub_checkpoint(tiny_model_dir):
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    assert AutoConfig.from_pretrained(tiny_model_dir).model_type == "qwen2_vl"
    proc = AutoProcessor.from_pretrained(tiny_model_dir)
    assert type(proc).__name__ == "Qwen2VLProcessor"
    assert (
        type(AutoModelForImageTextToText.from_pretrained(tiny_model_dir)).__name__ == "Qwen2VLForConditionalGeneration"
    )
    for tok in ("<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|image_pad|>", "<|vision_end|>"):
        assert tok in proc.tokenizer.get_vocab()


def test_ten_is_two_tokens_like_qwen(scorer):
    tok = scorer.tokenizer
    assert len(tok.encode("10", add_special_tokens=False)) == 2
    one, ten = scorer.candidates[0], scorer.candidates[9]
    assert ten[: len(one) - 1] == one[:-1], "'10' must share its first tokens with '1'"
    # The label tokens are the same in context as alone (no merge across 'Rating Level:').
    prefix = tok.encode("Rating Level:", add_special_tokens=False)
    assert tok.encode("Rating Level: 10", add_special_tokens=False) == prefix + ten[:-1]


def _brute_force(scorer: LevelScorer, image: Image.Image, answer_prefix: str) -> torch.Tensor:
    """log p(label + end | prompt + prefix) by one uncached forward per label."""
    enc = scorer._inputs([scorer.prompt() + answer_prefix], [image])
    n = enc["input_ids"].shape[1]
    out = []
    for cand in scorer.candidates:
        ids = torch.cat([enc["input_ids"], torch.tensor([cand])], dim=1)
        mtt = torch.cat(
            [enc["mm_token_type_ids"], torch.zeros((1, len(cand)), dtype=enc["mm_token_type_ids"].dtype)], 1
        )
        scorer.model.model.rope_deltas = None
        with torch.no_grad():
            logits = (
                scorer.model(
                    input_ids=ids,
                    attention_mask=torch.ones_like(ids),
                    pixel_values=enc["pixel_values"],
                    image_grid_thw=enc["image_grid_thw"],
                    mm_token_type_ids=mtt,
                )
                .logits[0]
                .float()
            )
        lp = torch.log_softmax(logits, dim=-1)
        out.append(sum(lp[n - 1 + i, t].item() for i, t in enumerate(cand)))
    return torch.tensor(out)


def test_batched_cached_scores_match_brute_force_with_padding(scorer):
    images = _images(3)
    # Different answer lengths force left padding inside the batch.
    prefixes = [
        "Rating Level:",
        "Analysis: The exposure is well balanced. Rating Level:",
        "Analysis: Contrast is strong. Rating Level:",
    ]
    fast = scorer.label_logprobs(images, prefixes)
    for b in range(3):
        assert torch.allclose(fast[b], _brute_force(scorer, images[b], prefixes[b]), atol=1e-4)


def test_predictions_are_distributions_and_weighted_scores(scorer):
    preds = scorer.predict(_images(2), mode="cot", max_new_tokens=8)
    for p in preds:
        assert abs(sum(p.probs) - 1) < 1e-4 and len(p.probs) == 10
        expect = sum(pr * (i + 1) for i, pr in enumerate(p.probs))
        assert abs(p.score - expect) < 1e-3 and 1.0 <= p.score <= 10.0
        assert p.text.endswith("Rating Level:")
    direct = scorer.predict(_images(1), mode="direct")
    assert direct[0].text == "Rating Level:" and direct[0].text_level is None


def test_cot_sampled_averages_the_level_distributions_of_k_sampled_critiques(scorer):
    images = _images(2)
    torch.manual_seed(0)
    preds = scorer.predict(images, mode="cot_sampled", max_new_tokens=8, samples=3)
    torch.manual_seed(0)  # the same draws, replayed by hand
    generated = scorer.generate(images, 8, samples=3)
    assert len(generated) == 6
    probs = torch.softmax(
        scorer.label_logprobs([im for im in images for _ in range(3)], [scorer.rating_prefix(g) for g in generated]), -1
    )
    for i, p in enumerate(preds):
        mean = probs[3 * i : 3 * i + 3].mean(dim=0)
        assert torch.allclose(torch.tensor(p.probs), mean, atol=1e-5)
        assert abs(p.score - sum(pr * (j + 1) for j, pr in enumerate(p.probs))) < 1e-3
    # One sample is the sampled analogue of cot; its distribution is that sample's.
    torch.manual_seed(1)
    one = scorer.predict(images[:1], mode="cot_sampled", max_new_tokens=8, samples=1)[0]
    torch.manual_seed(1)
    g = scorer.generate(images[:1], 8, samples=1)
    lp = scorer.label_logprobs(images[:1], [scorer.rating_prefix(g[0])])
    assert torch.allclose(torch.tensor(one.probs), torch.softmax(lp, -1)[0], atol=1e-5)
    with pytest.raises(ValueError, match="at least 1 sample"):
        scorer.predict(images[:1], mode="cot_sampled", samples=0)
    with pytest.raises(ValueError, match="cot \\| cot_sampled \\| direct"):
        scorer.predict(images[:1], mode="beam")


def test_rating_prefix_cuts_or_appends():
    assert LevelScorer.rating_prefix("Analysis: ok. Rating Level: 7") == "Analysis: ok. Rating Level:"
    assert LevelScorer.rating_prefix("Analysis: ok.") == "Analysis: ok. Rating Level:"
    assert LevelScorer.rating_prefix("") == "Rating Level:"


def test_qalign_scheme_scores_whole_words_and_matches_brute_force(tiny_model_dir):
    from aesthetic_llm.scoring.engine import QALIGN_AESTHETIC

    scorer = LevelScorer(tiny_model_dir, num_levels=10, device="cpu", scheme=QALIGN_AESTHETIC)
    assert scorer.prompt().count("How would you rate the aesthetics of this image?") == 1
    # The demo tokenizer never saw these words: several are multi-token, which is the point of the check.
    assert max(len(c) for c in scorer.candidates) > 1
    images = _images(2)
    prefix = QALIGN_AESTHETIC.answer_prefix
    fast = scorer.label_logprobs(images, [prefix, prefix])
    for b in range(2):
        assert torch.allclose(fast[b], _brute_force(scorer, images[b], prefix), atol=1e-4)
    pred = scorer.predict(images[:1], mode="direct")[0]
    assert pred.text == prefix and 1.0 <= pred.score <= 10.0
    expect = sum(p * c for p, c in zip(pred.probs, QALIGN_AESTHETIC.centres, strict=True))
    assert abs(pred.score - expect) < 1e-3
    with pytest.raises(ValueError, match="no cot mode"):
        scorer.predict(images[:1], mode="cot")


def test_qwen2vl_7b_preset_has_the_hub_checkpoints_parameter_count():
    """The GPU benchmarks' stand-in must be the real size: built on the meta device (no memory)."""
    import torch

    from aesthetic_llm.model.tiny import QWEN2VL_7B_BUILD, build_model

    model, processor, summary = build_model(QWEN2VL_7B_BUILD, 10, seed=0, device="meta")
    # Qwen/Qwen2-VL-7B-Instruct: 8,291,375,616 parameters (safetensors index); untied 152,064-row embedding.
    assert summary["parameters"] == 8_291_375_616
    assert next(model.parameters()).device == torch.device("meta")
    assert processor.image_processor.size["longest_edge"] == 512 * 512  # max_pixels


def test_zero2_benchmark_reads_step_times_from_the_trainer_log(tmp_path):
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("zero2_step", ROOT / "benchmarks/zero2_step.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    log = tmp_path / "trainer_log.jsonl"
    rows = [(1, "0:00:13"), (2, "0:00:20"), (3, "0:00:26"), (4, "0:01:05")]
    lines = [json.dumps({"current_steps": s, "loss": 1.0, "elapsed_time": e}) for s, e in rows]
    lines.append(json.dumps({"current_steps": 4, "elapsed_time": "0:01:09"}))  # closing summary, no loss
    log.write_text("\n".join(lines) + "\n")
    assert mod.step_seconds(log) == (65 - 13) / 3
    log.write_text(lines[0] + "\n")
    assert mod.step_seconds(log) is None
