"""Level-probability scoring: the study's (and Q-Align's) probability-weighted score, done correctly.

At the rating position the model's distribution over the N level labels is read as whole label
sequences, each followed by the end-of-turn token: with Qwen's digit-by-digit tokenizer "10" is
"1","0" and shares its first token with "1", so first-token probabilities are wrong. One forward pass
over the prompt (image included) fills a KV cache; one more batched pass scores every label of every
image from that cache. Score = Σ_l p(l) · centre(l) on the MOS scale.

Modes: `direct` (the answer starts with "Rating Level:"), `cot` (greedy analysis first, then the
distribution at "Rating Level:") and `cot_sampled` (k analyses sampled at temperature 1; the level
distributions after each are averaged: a Monte Carlo estimate of p(level | image) with the critique
marginalised out, where greedy decoding reads one critique's near one-hot distribution). The level the
model writes in text is recorded as well (cot_sampled: the most frequent written level).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from aesthetic_llm.levels import SCORE_MODES, level_labels, level_to_mos, parse_rating_level
from aesthetic_llm.model.families import THINK_END, Family, by_model_type, strip_thinking
from aesthetic_llm.prompts import RATING_PREFIX, score_instruction


@dataclass(frozen=True)
class ScoringScheme:
    """What is asked and which answers are weighed: the study's N levels, or Q-Align's five words."""

    name: str
    instruction: str
    answer_prefix: str  # the answer text before the label ("Rating Level:")
    labels: tuple[str, ...]
    centres: tuple[float, ...]  # each label's value on the MOS scale (1–10)
    end_of_turn: bool = True  # label followed by end of turn: needed when one label prefixes another ("1"/"10")
    cot: bool = True  # whether an analysis may be generated before the answer prefix


def levels_scheme(num_levels: int) -> ScoringScheme:
    labels = tuple(level_labels(num_levels))
    centres = tuple(level_to_mos(i + 1, num_levels) for i in range(num_levels))
    return ScoringScheme(f"levels{num_levels}", score_instruction(num_levels), RATING_PREFIX, labels, centres)


# Q-Align (Wu et al., 2023): five level words after a fixed stem, weights 1, .75, .5, .25, 0 -> MOS 10 … 1.
QALIGN_AESTHETIC = ScoringScheme(
    "qalign5",
    "How would you rate the aesthetics of this image?",
    "The aesthetics of the image is",
    ("excellent", "good", "fair", "poor", "bad"),
    tuple(1 + 9 * w for w in (1.0, 0.75, 0.5, 0.25, 0.0)),
    end_of_turn=False,
    cot=False,
)


def scheme_by_name(name: str, num_levels: int) -> ScoringScheme:
    if name == "levels":
        return levels_scheme(num_levels)
    if name == "qalign5":
        return QALIGN_AESTHETIC
    raise ValueError(f"unknown scoring scheme {name!r} (levels | qalign5)")


@dataclass
class LevelPrediction:
    score: float  # probability-weighted level, mapped to the MOS scale
    probs: list[float]  # p(level 1) … p(level N)
    text_level: int | None  # the level the model wrote (cot), or None
    text: str  # the assistant text up to and including "Rating Level:"


def load_model(model_path: str | Path, dtype: torch.dtype, processor_path: str | Path | None = None) -> tuple:
    """(processor, model) from a full checkpoint or hub id, or from a LoRA adapter dir (merged on load).

    processor_path: where the processor lives when model_path has none (a Trainer checkpoint dir)."""
    import json

    from transformers import AutoModelForImageTextToText, AutoProcessor

    path = Path(model_path)
    adapter_cfg = path / "adapter_config.json"
    if adapter_cfg.exists():
        from peft import PeftModel

        base = json.loads(adapter_cfg.read_text())["base_model_name_or_path"]
        has_processor = (path / "tokenizer_config.json").exists()
        processor = AutoProcessor.from_pretrained(str(path if has_processor else processor_path or base))
        model = AutoModelForImageTextToText.from_pretrained(base, dtype=dtype)
        return processor, PeftModel.from_pretrained(model, str(path)).merge_and_unload()
    has_processor = not path.exists() or (path / "tokenizer_config.json").exists()
    processor = AutoProcessor.from_pretrained(
        str(model_path if has_processor or processor_path is None else processor_path)
    )
    return processor, AutoModelForImageTextToText.from_pretrained(str(model_path), dtype=dtype)


class LevelScorer:
    def __init__(
        self,
        model_path: str | Path,
        num_levels: int = 10,
        device: str | None = None,
        dtype: torch.dtype | None = None,
        processor_path: str | Path | None = None,
        scheme: ScoringScheme | None = None,
        loaded: tuple | None = None,
    ) -> None:
        """loaded=(processor, model) scores a model already in memory (model_path is then only a label)."""
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = dtype or (torch.bfloat16 if self.device == "cuda" else torch.float32)
        self.processor, model = loaded or load_model(model_path, dtype, processor_path)
        self.model = model.to(self.device).eval()
        self.family: Family = by_model_type(getattr(model.config, "model_type", ""), str(model_path))
        self.tokenizer = self.processor.tokenizer
        self.tokenizer.padding_side = "left"
        self.num_levels = num_levels
        self.scheme = scheme or levels_scheme(num_levels)
        self.labels = list(self.scheme.labels)
        end = [self.tokenizer.convert_tokens_to_ids(self.family.end_of_turn)] if self.scheme.end_of_turn else []
        # " 7<|im_end|>": the label as the model writes it after the answer prefix, then end of turn.
        self.candidates = [self.tokenizer.encode(" " + lab, add_special_tokens=False) + end for lab in self.labels]
        self.centres = torch.tensor(self.scheme.centres)

    # -- prompts ----------------------------------------------------------------------------------
    def prompt(self) -> str:
        """The scoring prompt as LLaMA-Factory's template renders it in training (its system prompt included)."""
        user = {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": self.scheme.instruction}]}
        system = [{"role": "system", "content": self.family.system}] if self.family.system else []
        return self.processor.apply_chat_template([*system, user], add_generation_prompt=True)

    def _inputs(self, texts: Sequence[str], images: Sequence[Image.Image]) -> dict[str, torch.Tensor]:
        enc = self.processor(
            text=list(texts), images=list(images), return_tensors="pt", padding=True, **self.family.processor_kwargs
        )
        return {k: v.to(self.device) for k, v in enc.items()}

    # -- generation (cot) -------------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self, images: Sequence[Image.Image], max_new_tokens: int, samples: int = 0, temperature: float = 1.0
    ) -> list[str]:
        """Greedy answers (samples=0), or `samples` answers per image sampled (no top-p/top-k cut), grouped by image."""
        prompt = self.prompt()
        inputs = self._inputs([prompt] * len(images), images)
        sampling = {"do_sample": True, "temperature": temperature, "top_p": 1.0, "top_k": 0}
        sampling["num_return_sequences"] = samples
        out = self.model.generate(
            **inputs, max_new_tokens=max_new_tokens, **(sampling if samples else {"do_sample": False})
        )
        new = out[:, inputs["input_ids"].shape[1] :]
        return self.tokenizer.batch_decode(new, skip_special_tokens=True)

    @staticmethod
    def rating_prefix(generated: str) -> str:
        """Assistant text up to and including the first 'Rating Level:' of the answer (after any reasoning
        block); appended when the model omits it."""
        think = generated.rfind(THINK_END)
        idx = generated.find(RATING_PREFIX, think + len(THINK_END) if think >= 0 else 0)
        if idx >= 0:
            return generated[: idx + len(RATING_PREFIX)]
        return (generated.strip() + " " + RATING_PREFIX).lstrip()

    # -- level distribution -----------------------------------------------------------------------
    @torch.no_grad()
    def label_logprobs(self, images: Sequence[Image.Image], answer_prefixes: Sequence[str]) -> torch.Tensor:
        """(B, N) log-probabilities of each full label sequence after each prompt + answer prefix."""
        prompt = self.prompt()
        inputs = self._inputs([prompt + a for a in answer_prefixes], images)
        mask = inputs["attention_mask"]
        pos = self._positions(inputs)
        out = self.model(**inputs, position_ids=pos, use_cache=True)
        first = torch.log_softmax(out.logits[:, -1].float(), dim=-1)  # distribution of each label's first token

        n_img, n_lab = len(images), len(self.candidates)
        width = max(len(c) for c in self.candidates)
        pad = self.tokenizer.pad_token_id
        cand = torch.full((n_lab, width), pad, dtype=torch.long)
        cand_mask = torch.zeros((n_lab, width), dtype=torch.long)
        for i, c in enumerate(self.candidates):
            cand[i, : len(c)] = torch.tensor(c)
            cand_mask[i, : len(c)] = 1
        cand = cand.repeat(n_img, 1).to(self.device)  # (B*N, W), image-major
        cand_mask = cand_mask.repeat(n_img, 1).to(self.device)
        cache = out.past_key_values
        cache.batch_repeat_interleave(n_lab)
        # Text positions continue after the prompt's last position (M-RoPE: the max over its 3 axes); padding
        # is left.
        start = (pos[:, :, -1].max(dim=0).values if self.family.mrope else pos[:, -1]) + 1  # (B,)
        steps = torch.arange(width, device=self.device)
        cpos = start.repeat_interleave(n_lab)[:, None] + steps[None]
        if self.family.mrope:
            cpos = cpos.unsqueeze(0).expand(3, -1, -1)
            self.model.model.rope_deltas = None
        full_mask = torch.cat([mask.repeat_interleave(n_lab, dim=0), cand_mask], dim=1)
        logits = self.model(
            input_ids=cand, attention_mask=full_mask, position_ids=cpos, past_key_values=cache, use_cache=True
        ).logits.float()
        logp = torch.log_softmax(logits, dim=-1)  # (B*N, W, V): position t predicts token t+1
        first_lp = first.repeat_interleave(n_lab, dim=0).gather(1, cand[:, :1]).squeeze(1)
        rest = logp[:, :-1].gather(2, cand[:, 1:, None]).squeeze(2) * cand_mask[:, 1:]
        return (first_lp + rest.sum(dim=1)).view(n_img, n_lab).cpu()

    def _positions(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Position ids of left-padded prompts: Qwen's 3-D M-RoPE ids (3, B, L), or 1-D ones (B, L)."""
        mask = inputs["attention_mask"]
        if not self.family.mrope:
            return (mask.cumsum(dim=1) - 1).clamp(min=0)
        pos, _ = self.model.model.get_rope_index(
            inputs["input_ids"],
            image_grid_thw=inputs.get("image_grid_thw"),
            attention_mask=mask,
            mm_token_type_ids=inputs.get("mm_token_type_ids"),
        )
        return pos

    def predict(
        self, images: Sequence[Image.Image], mode: str = "cot", max_new_tokens: int = 96, samples: int = 8
    ) -> list[LevelPrediction]:
        if mode != "direct" and not self.scheme.cot:
            raise ValueError(f"scheme {self.scheme.name} has no cot mode (use direct)")
        if mode == "cot_sampled":
            return self._predict_sampled(images, max_new_tokens, samples)
        if mode == "cot":
            generated = self.generate(images, max_new_tokens)
            prefixes = [self.rating_prefix(g) for g in generated]
            text_levels = [parse_rating_level(strip_thinking(g), self.num_levels) for g in generated]
        elif mode == "direct":
            prefixes = [self.scheme.answer_prefix] * len(images)
            text_levels = [None] * len(images)
        else:
            raise ValueError(f"unknown scoring mode {mode!r} ({' | '.join(SCORE_MODES)})")
        probs = torch.softmax(self.label_logprobs(images, prefixes), dim=-1)
        scores = probs @ self.centres
        return [
            LevelPrediction(float(s), [float(x) for x in p], tl, t)
            for s, p, tl, t in zip(scores, probs, text_levels, prefixes, strict=True)
        ]

    def _predict_sampled(self, images: Sequence[Image.Image], max_new_tokens: int, k: int) -> list[LevelPrediction]:
        """cot_sampled: the mean of the level distributions after k sampled analyses per image."""
        from collections import Counter

        if k < 1:
            raise ValueError(f"cot_sampled needs at least 1 sample per image, got {k}")
        generated = self.generate(images, max_new_tokens, samples=k)
        repeated = [im for im in images for _ in range(k)]
        probs = torch.softmax(self.label_logprobs(repeated, [self.rating_prefix(g) for g in generated]), dim=-1)
        probs = probs.view(len(images), k, -1).mean(dim=1)
        scores = probs @ self.centres
        out = []
        for i, (s, p) in enumerate(zip(scores, probs, strict=True)):
            answers = generated[i * k : (i + 1) * k]
            written = [lv for lv in (parse_rating_level(strip_thinking(g), self.num_levels) for g in answers)]
            written = [lv for lv in written if lv is not None]
            level = Counter(written).most_common(1)[0][0] if written else None
            out.append(LevelPrediction(float(s), [float(x) for x in p], level, self.rating_prefix(answers[0])))
        return out
