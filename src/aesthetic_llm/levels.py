"""Mapping between MOS (AVA's 1–10 scale) and the N discrete rating levels the model writes."""

from __future__ import annotations

import math
import re

MOS_MIN, MOS_MAX = 1.0, 10.0
_RATING_RE = re.compile(r"Rating Level:\s*(\d+)")
# How the level distribution is read (scoring.LevelScorer.predict): greedy critique, k sampled critiques, none.
SCORE_MODES = ("cot", "cot_sampled", "direct")


def level_labels(num_levels: int) -> list[str]:
    """The label strings the model writes after 'Rating Level: ' ("1" … "10")."""
    return [str(i) for i in range(1, num_levels + 1)]


def mos_to_level(mos: float, num_levels: int) -> int:
    """Nearest level whose centre is closest to mos (identity rounding when num_levels == 10)."""
    frac = (min(max(mos, MOS_MIN), MOS_MAX) - MOS_MIN) / (MOS_MAX - MOS_MIN)
    return 1 + math.floor(frac * (num_levels - 1) + 0.5)  # half-up, not banker's rounding


def level_to_mos(level: float, num_levels: int) -> float:
    """Centre of a level on the MOS scale; linear, so it also maps a probability-weighted level."""
    return MOS_MIN + (level - 1) * (MOS_MAX - MOS_MIN) / (num_levels - 1)


def parse_rating_level(text: str, num_levels: int) -> int | None:
    """The last 'Rating Level: N' in text, or None when absent or out of range."""
    matches = _RATING_RE.findall(text)
    if not matches:
        return None
    level = int(matches[-1])
    return level if 1 <= level <= num_levels else None
