"""Offline critic: writes 'Analysis: … Rating Level: N' from measured image properties and a given level.

It plays the role Qwen-VL-Plus played in the study (a critic told each image's true score): the
analysis describes what can be measured in the pixels, the verdict follows the level it is given.
Deterministic, so a rerun writes the same critiques.
"""

from __future__ import annotations

from aesthetic_llm.measure import ImageProperties
from aesthetic_llm.prompts import RATING_PREFIX

_EXPOSURE = [
    (0.25, "The exposure is dark and much of the detail is lost in the shadows."),
    (0.38, "The photo is slightly underexposed."),
    (0.62, "The exposure is well balanced."),
    (0.75, "The photo is slightly overexposed."),
    (9.99, "The exposure is too bright and the highlights are washed out."),
]
_CONTRAST = [(0.08, "Contrast is very flat."), (0.16, "Contrast is moderate."), (9.99, "Contrast is strong.")]
_SHARPNESS = [
    (10.0, "Fine detail is blurred and the image looks soft."),
    (30.0, "Edges are reasonably sharp."),
    (999.0, "Edges are crisp with clear fine detail."),
]
_NOISE = [
    (2.0, "The image is clean with no visible noise."),
    (8.0, "There is some visible grain."),
    (999.0, "Heavy noise covers the image."),
]
_COLOUR = [
    (8.0, "The colours are muted, almost monochrome."),
    (30.0, "The colours look natural."),
    (999.0, "The colours are vivid."),
]
_VERDICT = {
    1: "Overall the technical flaws ruin the picture.",
    2: "Overall the picture is very poor.",
    3: "Overall the flaws clearly outweigh its strengths.",
    4: "Overall the picture is below average.",
    5: "Overall the picture is mediocre.",
    6: "Overall the picture is acceptable but unremarkable.",
    7: "Overall the picture is good.",
    8: "Overall the picture is very good.",
    9: "Overall the picture is excellent.",
    10: "Overall the picture is outstanding in every respect.",
}


def _pick(table: list[tuple[float, str]], value: float) -> str:
    return next(text for bound, text in table if value < bound)


def verdict(level: int, num_levels: int) -> str:
    """A verdict sentence for a level, mapping any level count onto the 10 canonical sentences."""
    key = 1 + round((level - 1) * 9 / max(num_levels - 1, 1))
    return _VERDICT[key]


def describe_properties(props: ImageProperties) -> str:
    """The critic's sentences on what is measurable: exposure, contrast, sharpness, noise, colour."""
    return " ".join(
        [
            _pick(_EXPOSURE, props.brightness),
            _pick(_CONTRAST, props.contrast),
            _pick(_SHARPNESS, props.sharpness),
            _pick(_NOISE, props.noise),
            _pick(_COLOUR, props.colourfulness),
        ]
    )


def rule_of_thumb_level(props: ImageProperties, num_levels: int) -> int:
    """A naive, uncalibrated notion of quality — "more edge energy looks better" — from measurements only.

    The demo base learns it in pre-training as its generic prior, the stand-in for what a web-trained
    VLM brings to a rating prompt: loosely related to the truth (noise also adds edge energy), biased."""
    z = min(props.sharpness / 40.0, 1.0)
    return 1 + round(z * (num_levels - 1))


def write_critique(props: ImageProperties, level: int, num_levels: int) -> str:
    """'Analysis: … Rating Level: N' — no numeric score in the analysis, the level only at the end."""
    return f"Analysis: {describe_properties(props)} {verdict(level, num_levels)} {RATING_PREFIX} {level}"


def phrase_bank() -> list[str]:
    """Every sentence the critic can write (used to train the demo tokenizer)."""
    tables = [_EXPOSURE, _CONTRAST, _SHARPNESS, _NOISE, _COLOUR]
    return [text for table in tables for _, text in table] + list(_VERDICT.values())
