"""Score your own photos with any model the pipeline produced (demo or paper, merged or LoRA adapter).

from aesthetic_llm.scorer import Scorer
scorer = Scorer("models/dpo")
scorer(["a.jpg", "b.png"])                  # -> [6.12, 4.87] on AVA's 1–10 scale
scorer.score(["a.jpg"], critique=True)      # -> [ImageScore(path, score, level, critique, probs)]
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


@dataclass
class ImageScore:
    path: str
    score: float
    level: int | None  # the level written in text (cot mode)
    critique: str | None  # the analysis the model wrote (cot mode, when asked for)
    probs: list[float] | None = None  # p(level 1) … p(level N) the score is the expectation of


def expand_paths(inputs: Iterable[str | Path]) -> list[Path]:
    """Files as given, folders expanded (sorted, recursive) to their image files."""
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()))
        else:
            out.append(p)
    return out


def read_images(paths: Sequence[Path]) -> Iterator[tuple[Path, Image.Image | None, str | None]]:
    """(path, image, None) or (path, None, reason) for unreadable files."""
    for p in paths:
        try:
            with Image.open(p) as im:
                yield p, im.convert("RGB"), None
        except FileNotFoundError:
            yield p, None, "not found"
        except OSError as exc:
            yield p, None, f"unreadable ({exc.__class__.__name__})"


class Scorer:
    def __init__(
        self,
        model_path: str | Path,
        num_levels: int = 10,
        mode: str = "cot",
        max_new_tokens: int = 96,
        batch_size: int = 8,
        device: str | None = None,
        samples: int = 8,
    ) -> None:
        """mode: cot | cot_sampled (`samples` critiques per image, their level distributions averaged) | direct."""
        from aesthetic_llm.scoring.engine import LevelScorer

        self.level_scorer = LevelScorer(model_path, num_levels=num_levels, device=device)
        self.mode, self.max_new_tokens, self.batch_size, self.samples = mode, max_new_tokens, batch_size, samples
        self.skipped: list[tuple[str, str]] = []

    def __call__(self, images: Sequence[str | Path | Image.Image]) -> list[float]:
        return [s.score for s in self.score(images)]

    def score(
        self,
        images: Sequence[str | Path | Image.Image],
        critique: bool = False,
        progress: bool = False,
        mode: str | None = None,
    ) -> list[ImageScore]:
        """Score images (paths or PIL images) in `mode` (default: the scorer's); unreadable paths are skipped
        and listed in self.skipped."""
        mode = mode or self.mode
        self.skipped = []
        items: list[tuple[str, Image.Image]] = []
        paths = [p for p in images if not isinstance(p, Image.Image)]
        readable = {str(p): (im, why) for p, im, why in read_images([Path(p) for p in paths])}
        for i, img in enumerate(images):
            if isinstance(img, Image.Image):
                items.append((f"<image {i}>", img.convert("RGB")))
                continue
            im, why = readable[str(Path(img))]
            if im is None:
                self.skipped.append((str(img), why or "unreadable"))
            else:
                items.append((str(img), im))
        batches = range(0, len(items), self.batch_size)
        if progress:
            from tqdm import tqdm

            batches = tqdm(batches, desc="scoring", unit="batch", file=sys.stderr)
        out: list[ImageScore] = []
        for start in batches:
            chunk = items[start : start + self.batch_size]
            preds = self.level_scorer.predict(
                [im for _, im in chunk], mode=mode, max_new_tokens=self.max_new_tokens, samples=self.samples
            )
            for (name, _), p in zip(chunk, preds, strict=True):
                text = p.text.removesuffix("Rating Level:").strip() if critique and mode != "direct" else None
                out.append(ImageScore(name, round(p.score, 4), p.text_level, text, list(p.probs)))
        return out


def scorer_from_args(args: Any) -> Scorer:
    """The Scorer the command-line tools build from their shared flags (--model, --mode, --samples, …)."""
    from aesthetic_llm.errors import UserError

    if args.samples < 1:
        raise UserError(f"--samples {args.samples}: expected at least 1")
    if not (Path(args.model).exists() or "/" in args.model):
        raise UserError(f"--model {args.model}: no such checkpoint directory")
    return Scorer(
        args.model,
        num_levels=args.num_levels,
        mode=args.mode,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        samples=args.samples,
    )
