"""On-policy answers for DPO pairs: k sampled critiques per training image from the SFT model.

Only `scripts/make_dpo_data.py` imports this (dpo.pair_strategy: on_policy), so the data stages that build
SFT datasets do not depend on the model code. The pairing itself is `lf_data.on_policy_pairs`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aesthetic_llm.errors import UserError
from aesthetic_llm.levels import parse_rating_level


def sample_answers(
    model_dir: str | Path,
    annotations: list[dict[str, Any]],
    num_levels: int,
    k: int,
    temperature: float,
    max_new_tokens: int,
    batch_size: int,
    seed: int,
    device: str | None = None,
) -> dict[str, list[tuple[str, int | None]]]:
    """{image_id: [(answer text, written level or None) × k]}, sampled with the scoring prompt and the image."""
    import torch
    from PIL import Image

    from aesthetic_llm.scoring.engine import LevelScorer

    if not Path(model_dir).exists():
        raise UserError(f"{model_dir}: SFT model not found (dpo.pair_strategy on_policy samples from it)")
    torch.manual_seed(seed)
    scorer = LevelScorer(model_dir, num_levels, device=device)
    out: dict[str, list[tuple[str, int | None]]] = {}
    for start in range(0, len(annotations), batch_size):
        batch = annotations[start : start + batch_size]
        images = []
        for a in batch:
            try:
                with Image.open(a["path"]) as im:
                    images.append(im.convert("RGB"))
            except OSError as exc:
                raise UserError(f"{a['path']}: cannot read image ({exc})") from None
        texts = scorer.generate(images, max_new_tokens, samples=k, temperature=temperature)
        for i, a in enumerate(batch):  # generate returns the k samples of each input together
            answers = [t.strip() for t in texts[i * k : (i + 1) * k]]
            out[a["image_id"]] = [(t, parse_rating_level(t, num_levels)) for t in answers]
    return out
