"""Prompt texts, versioned: a change of wording is a change of experiment."""

from __future__ import annotations

PROMPT_VERSION = "v1"

# The question every model is asked (zero-shot, SFT, DPO, scoring). <image> is LLaMA-Factory's placeholder.
SCORE_INSTRUCTION = (
    "Assess the aesthetic quality of this photo. Describe its exposure, sharpness, noise and colour, "
    "then give your verdict ending with 'Rating Level: N', where N is an integer from 1 (worst) to {num_levels} (best)."
)

# Prompt given to the critic (an API model in the paper profile) together with the image and its true level.
CRITIC_INSTRUCTION = (
    "You are a photography critic. This photo's aesthetic rating is level {level} on a scale of 1 to {num_levels}. "
    "Write a short analysis of its exposure, sharpness, noise, colour and composition that justifies this rating "
    "without mentioning any number, then end with exactly 'Rating Level: {level}'."
)

RATING_PREFIX = "Rating Level:"


def score_instruction(num_levels: int) -> str:
    return SCORE_INSTRUCTION.format(num_levels=num_levels)
