"""Demo dataset: real photos shipped inside installed packages, cropped and degraded with known strength.

Each crop is first made a well-exposed reference (the most detailed of a few random crops, luminance
mean and spread set to a common range, so "soft" or "dark" is damage, not content). It then receives a
quality q ~ U(0, 1); the damage 1 − q is split across one to `max_types` degradation types, each applied
with its share as strength. The score is MOS = 1 + 9·q on AVA's 1–10 scale, so the label is a known
function of the degradations. One type per crop (the default) keeps each score readable from the
pixels (mixing types caps what any model can read from them: docs/notebook.md). Splits are by source photo; `unseen` uses held-out
photos and degradation types never seen in training (the role AADB plays in the study).
"""

from __future__ import annotations

import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from aesthetic_llm.data.manifest import SPLITS
from aesthetic_llm.data.splits import finish_splits
from aesthetic_llm.errors import UserError
from aesthetic_llm.params import Params


@dataclass(frozen=True)
class SourcePhoto:
    name: str
    package: str  # importable package that ships the file
    relpath: str  # path inside the package


# Photographs only (no charts, text or synthetic test patterns). Both motorcycle views are one source.
SOURCES: tuple[SourcePhoto, ...] = (
    SourcePhoto("astronaut", "skimage", "data/astronaut.png"),
    SourcePhoto("camera", "skimage", "data/camera.png"),
    SourcePhoto("coffee", "skimage", "data/coffee.png"),
    SourcePhoto("chelsea", "skimage", "data/chelsea.png"),
    SourcePhoto("rocket", "skimage", "data/rocket.jpg"),
    SourcePhoto("motorcycle", "skimage", "data/motorcycle_left.png"),
    SourcePhoto("motorcycle", "skimage", "data/motorcycle_right.png"),
    SourcePhoto("coins", "skimage", "data/coins.png"),
    SourcePhoto("moon", "skimage", "data/moon.png"),
    SourcePhoto("hubble", "skimage", "data/hubble_deep_field.jpg"),
    SourcePhoto("gravel", "skimage", "data/gravel.png"),
    SourcePhoto("grass", "skimage", "data/grass.png"),
    SourcePhoto("brick", "skimage", "data/brick.png"),
    SourcePhoto("retina", "skimage", "data/retina.jpg"),
    SourcePhoto("ihc", "skimage", "data/ihc.png"),
    SourcePhoto("cell", "skimage", "data/cell.png"),
    SourcePhoto("clock", "skimage", "data/clock_motion.png"),
    SourcePhoto("china", "sklearn", "datasets/images/china.jpg"),
    SourcePhoto("flower", "sklearn", "datasets/images/flower.jpg"),
    SourcePhoto("grace_hopper", "matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
    # Photos shipped with gradio (a LLaMA-Factory dependency); not held out, so they widen train's content.
    SourcePhoto("cheetah_face", "gradio", "media_assets/images/cheetah1.jpg"),
    SourcePhoto("cheetah_cub", "gradio", "test_data/cheetah2.jpg"),
    SourcePhoto("cheetah_running", "gradio", "media_assets/images/cheetah.jpg"),
    SourcePhoto("lion", "gradio", "media_assets/images/lion.jpg"),
    SourcePhoto("eiffel_tower", "gradio", "media_assets/images/tower.jpg"),
)
SEEN_DEGRADATIONS = ("blur", "noise", "jpeg", "exposure", "colour")
UNSEEN_DEGRADATIONS = ("pixelate", "haze")


def source_path(src: SourcePhoto) -> Path:
    """The photo inside its installed package; $DEMO_PHOTO_ROOT/<package>/<relpath> instead where set
    (a bare GPU machine without gradio/scikit-image gets the same files copied)."""
    import importlib
    import os

    if os.environ.get("DEMO_PHOTO_ROOT"):
        path = Path(os.environ["DEMO_PHOTO_ROOT"]) / src.package / src.relpath
        if not path.exists():
            raise UserError(f"demo source {src.name}: {path} is missing (DEMO_PHOTO_ROOT is set)")
        return path
    try:
        module = importlib.import_module(src.package)
    except ImportError as exc:
        raise UserError(f"demo source {src.name}: package {src.package} is not installed ({exc})") from None
    path = Path(module.__file__).parent / src.relpath
    if not path.exists():
        raise UserError(f"demo source {src.name}: {path} is missing from the installed {src.package}")
    return path


def load_sources() -> dict[str, list[Image.Image]]:
    """Source name -> list of RGB images (a name may have several views)."""
    out: dict[str, list[Image.Image]] = {}
    for src in SOURCES:
        with Image.open(source_path(src)) as im:
            out.setdefault(src.name, []).append(im.convert("RGB"))
    return out


def degrade(img: Image.Image, kind: str, strength: float, rng: np.random.Generator) -> Image.Image:
    """Apply one degradation; strength 0 = none, 1 = severe."""
    s = float(np.clip(strength, 0.0, 1.0))
    if s <= 0:
        return img
    if kind == "blur":
        return img.filter(ImageFilter.GaussianBlur(radius=3.0 * s))
    if kind == "noise":
        arr = np.asarray(img, dtype=np.float32)
        arr = arr + rng.normal(0.0, 60.0 * s, size=arr.shape)
        return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    if kind == "jpeg":
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=max(2, int(round(90 - 88 * s))))
        buf.seek(0)
        return Image.open(buf).convert("RGB")
    if kind == "exposure":
        gain = 2.0 ** (2.2 * s * (1 if rng.random() < 0.5 else -1))
        return ImageEnhance.Brightness(img).enhance(gain)
    if kind == "colour":
        return ImageEnhance.Color(img).enhance(1.0 - 0.95 * s)
    if kind == "pixelate":
        w, h = img.size
        f = 1 + 7 * s
        small = img.resize((max(4, int(w / f)), max(4, int(h / f))), Image.BILINEAR)
        return small.resize((w, h), Image.NEAREST)
    if kind == "haze":
        arr = np.asarray(img, dtype=np.float32)
        arr = arr * (1 - 0.75 * s) + 200.0 * 0.75 * s
        return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    raise UserError(f"unknown degradation {kind!r} (known: {', '.join(SEEN_DEGRADATIONS + UNSEEN_DEGRADATIONS)})")


def is_grayscale(img: Image.Image) -> bool:
    arr = np.asarray(img.convert("RGB"), dtype=np.int16)[::4, ::4]
    return bool(np.abs(arr[..., 0] - arr[..., 1]).max() <= 2 and np.abs(arr[..., 1] - arr[..., 2]).max() <= 2)


def random_crop(img: Image.Image, size: int, rng: np.random.Generator, min_frac: float = 0.35) -> Image.Image:
    w, h = img.size
    side = int(min(w, h) * rng.uniform(min_frac, 1.0))
    x = int(rng.integers(0, w - side + 1))
    y = int(rng.integers(0, h - side + 1))
    crop = img.crop((x, y, x + side, y + side)).resize((size, size), Image.LANCZOS)
    return crop.transpose(Image.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else crop


def detail(img: Image.Image) -> float:
    """Mean absolute luminance gradient (0–255 scale)."""
    lum = np.asarray(img.convert("L"), dtype=np.float64)
    return float(np.abs(np.diff(lum, axis=0)).mean() + np.abs(np.diff(lum, axis=1)).mean())


def reference_crop(img: Image.Image, size: int, rng: np.random.Generator, tries: int = 8) -> Image.Image:
    """A well-exposed, detailed crop: the best of up to `tries` random crops, luminance normalised.

    Normalising mean and spread removes the photos' own exposure and contrast from the label's
    confounds; choosing detailed crops keeps flat sky from reading as blur."""
    best: tuple[float, Image.Image] | None = None
    for _ in range(tries):
        crop = random_crop(img, size, rng)
        d = detail(crop)
        if best is None or d > best[0]:
            best = (d, crop)
        if d > 10.0:
            break
    assert best is not None
    arr = np.asarray(best[1], dtype=np.float64)
    lum = arr @ np.array([0.299, 0.587, 0.114])
    target_mean, target_std = rng.uniform(110, 140), rng.uniform(45, 60)
    arr = (arr - lum.mean()) * (target_std / (lum.std() + 1e-6)) + target_mean
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


@dataclass
class Sample:
    image_id: str
    source: str
    mos: float
    degradations: dict[str, float]
    image: Image.Image


def make_sample(
    image_id: str,
    source: str,
    photo: Image.Image,
    kinds: tuple[str, ...],
    size: int,
    rng: np.random.Generator,
    max_types: int = 1,
    reference: bool = True,
) -> Sample:
    quality = float(rng.uniform(0.0, 1.0))
    if is_grayscale(photo):
        # Desaturating a grey photo changes nothing: a score must only reflect visible damage.
        kinds = tuple(k for k in kinds if k != "colour")
    n_types = int(rng.integers(1, min(max_types, len(kinds)) + 1))
    chosen = list(rng.choice(kinds, size=n_types, replace=False))
    shares = rng.dirichlet(np.ones(n_types))
    strengths = {str(k): float((1.0 - quality) * sh) for k, sh in zip(chosen, shares, strict=True)}
    img = reference_crop(photo, size, rng) if reference else random_crop(photo, size, rng)
    for kind in chosen:  # fixed application order keeps the same strengths reproducible
        img = degrade(img, kind, strengths[kind], rng)
    return Sample(image_id, source, round(1.0 + 9.0 * quality, 4), strengths, img)


def assign_sources(params: Params) -> dict[str, list[str]]:
    names = sorted({s.name for s in SOURCES})
    held: dict[str, list[str]] = {}
    for split in ("val", "test", "unseen"):
        chosen = params.list(f"data.split_sources.{split}")
        unknown = [n for n in chosen if n not in names]
        if unknown:
            raise UserError(
                f"{params.source}: data.split_sources.{split}: unknown source(s) {unknown} (known: {names})"
            )
        held[split] = list(chosen)
    flat = [n for v in held.values() for n in v]
    dupes = sorted({n for n in flat if flat.count(n) > 1})
    if dupes:
        raise UserError(f"{params.source}: data.split_sources: {dupes} listed in more than one split")
    held["train"] = [n for n in names if n not in flat]
    if not held["train"]:
        raise UserError(f"{params.source}: data.split_sources: no source photo left for train")
    return held


def prepare_demo(params: Params, out_dir: Path) -> dict[str, Any]:
    size = params.int("data.image_size", lo=28)
    seed = params.int("seed")
    unseen_kinds = tuple(params.list("data.unseen_degradations"))
    max_types = params.int("data.max_degradations", lo=1)
    reference = params.bool("data.reference_crops")
    sources = load_sources()
    assignment = assign_sources(params)
    if out_dir.exists():
        shutil.rmtree(out_dir)  # a DVC out: always rebuilt whole, never half-updated
    rows_by_split: dict[str, list[dict[str, Any]]] = {}
    for split_idx, split in enumerate(SPLITS):
        per_source = params.int(f"data.crops_per_source.{split}", lo=1)
        kinds = SEEN_DEGRADATIONS + unseen_kinds if split == "unseen" else SEEN_DEGRADATIONS
        rows = []
        for src_idx, name in enumerate(assignment[split]):
            # One generator per (split, source): adding a source does not reshuffle the others.
            rng = np.random.default_rng([seed, split_idx, src_idx])
            views = sources[name]
            for k in range(per_source):
                image_id = f"{split}-{name}-{k:04d}"
                sample = make_sample(image_id, name, views[k % len(views)], kinds, size, rng, max_types, reference)
                rel = Path(out_dir) / "images" / split / f"{image_id}.png"
                rel.parent.mkdir(parents=True, exist_ok=True)
                sample.image.save(rel, format="PNG")
                rows.append(
                    {
                        "image_id": image_id,
                        "path": rel.as_posix(),
                        "mos": sample.mos,
                        "split": split,
                        "source": name,
                        "degradations": json.dumps({k: round(v, 4) for k, v in sample.degradations.items()}),
                    }
                )
        rows_by_split[split] = rows
    return finish_splits(params, out_dir, rows_by_split, assignment)
