"""Answer validation: the 'Rating Level: N' tail and no score stated in the analysis."""

from __future__ import annotations

import functools
import re

from aesthetic_llm.levels import parse_rating_level
from aesthetic_llm.prompts import RATING_PREFIX

_TAIL_RE = re.compile(re.escape(RATING_PREFIX) + r"\s*(\d+)\s*\.?\s*$")


# -- answer validation -----------------------------------------------------------------------------
# The critic is told the true level, so the one thing its analysis must not do is state that level (or the
# MOS) as a score: a model trained on such text would learn to copy a number, not to judge the photo.
# Ordinary numbers (f/1.8, 35mm, ISO 3200, 1/250 s, 1970s, 16:9, 4K, "two people", "3 windows") are fine.
_NUMBER_WORDS = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
    "twenty",
]
# A number token: 7, 7.5, 7,5; never a piece of a longer token (1970s, 35mm, 4K, ISO3200, the 1.8 of f/1.8, the
# 250 of 1/250, the 9 of 16:9).
_NUM = r"(?<![\w.,/])(?<!\d:)\d+(?:[.,]\d+)?(?!\w|[.,]\d)"
_WORD = r"\b(?:" + "|".join(_NUMBER_WORDS) + r")\b"
_WORD_NOT_ONE = r"\b(?:" + "|".join(w for w in _NUMBER_WORDS if w != "one") + r")\b"  # "a strong one" is a pronoun
_VAL = rf"(?:{_NUM}|{_WORD})"
_SEP = r"(?:\s*[:=]\s*|\s*[-–—]\s*|\s+)"
# Words that may stand between a rating word/verb and its number: "score of about 7", "rated it a solid seven".
_FILLER = (
    r"(?:of|a|an|at|around|about|roughly|approximately|approx\.?|maybe|perhaps|probably|likely|solid|strong|clear|"
    r"firm|high|low|mere|just|only|nearly|almost|easily|is|was|be|would|will|to|me|it|this|that|the|photo|image|"
    r"picture|shot|here|somewhere|between|than|above|below|over|under|overall|even|full|perfect|respectable|decent)"
)
_FILLERS = rf"(?:{_FILLER}\s+){{0,3}}"
# What may follow a number that is a verdict ("deserves an 8.", "a solid seven for its colours"), as opposed to a
# count ("gets two distinct layers", "a 1/250 s exposure", "a 16:9 frame").
_TAIL = (
    r"(?=\s*(?:$|[.,;!?)\]]|\b(?:for|overall|here|in|on|out|from|because|since|given|thanks|due|but|and|with|as|"
    r"if|or|at|though|although|which|that|really|easily|maybe|perhaps|is|would|could|i)\b))"
)
_RATING_WORDS = (
    r"\b(?:scores?|scored|scoring|ratings?|rated|rate\s+(?:it|this)|grades?|graded|grading|mos|"
    r"mean\s+opinion|marks?\s+of)\b"
)
_VERBS = (
    r"\b(?:give|gives|giving|gave|deserves?|deserving|deserved|earns?|earned|earning|merits?|merited|worth|"
    r"i['’]d\s+say|i\s+would\s+say|call\s+it|put\s+it\s+at|score\s+it)\b"
)
_ADJ = (
    r"(?:solid|strong|clear|easy|decent|fair|respectable|high|low|mere|generous|firm|comfortable|good|weak|"
    r"borderline|honest|very|rather|pretty|middling|modest|safe|deserved|well[- ]deserved|perfect|full)"
)
_LABELS = r"\b(?:overall|verdict|final|total|result|assessment|aesthetics?|quality|conclusion|summary)\b"


_STRIP = " \t\n.!?;:-–—"  # trimmed off the quoted match in a rejection reason


@functools.lru_cache(maxsize=16)
def _leak_patterns(num_levels: int) -> tuple[tuple[str, re.Pattern[str]], ...]:
    dens = sorted({"10", "100", str(num_levels)}, key=len, reverse=True)
    den_words = ["ten", "hundred"] + ([_NUMBER_WORDS[num_levels]] if num_levels < len(_NUMBER_WORDS) else [])
    # "N/10", "N / 10", "N out of 10", "seven out of ten" (not a shutter speed: "1/10 s", "1/100 sec").
    den = rf"(?:(?:{'|'.join(dens)})(?!\w|[.,]\d)(?!\s*(?:s|secs?|seconds?)\b)|\b(?:{'|'.join(den_words)})\b)"
    rules = [
        ("N out of M form", rf"{_VAL}\s*(?:/|\bout\s+of\b)\s*{den}"),
        ("number after a rating word", rf"{_RATING_WORDS}{_SEP}{_FILLERS}{_VAL}"),
        ("level number", rf"\blevels?{_SEP}(?:of\s+)?{_VAL}"),
        ("points", rf"(?:{_NUM}|{_WORD_NOT_ONE})\s*(?:points?|pts)\b(?!\s+of\b)"),
        ("number as a verdict", rf"{_VERBS}{_SEP}{_FILLERS}{_VAL}{_TAIL}"),
        ("number as a verdict", rf"\b(?:a|an)\s+(?:{_ADJ}\s+){{0,2}}(?:{_NUM}|{_WORD_NOT_ONE}){_TAIL}"),
        ("number as a verdict", rf"{_LABELS}\s*(?:[:=]|[-–—])\s*{_VAL}{_TAIL}"),
        ("bare number", rf"(?:^|\n)[ \t]*{_VAL}[ \t]*[.!]?[ \t]*(?:\n|$)"),  # a line that is only a number
        (
            "bare number",  # the analysis ends on a sentence that is only a number: "… soft. 7"
            rf"(?:^|[.!?;:\n]|\s[-–—])\s*(?:(?:so|thus|hence|therefore|overall|verdict)\W+)?{_VAL}\s*[.!]?\s*$",
        ),
    ]
    return tuple((kind, re.compile(rx, re.IGNORECASE)) for kind, rx in rules)


def score_leak(analysis: str, num_levels: int = 10) -> str | None:
    """Why the analysis states a score (the level or the MOS as a number), or None when its numbers are ordinary."""
    text = analysis.strip()
    if text.lower().startswith("analysis:"):
        text = text[len("analysis:") :].lstrip()
    for kind, rx in _leak_patterns(num_levels):
        m = rx.search(text)
        if m:
            return f"analysis states a score-like number ({kind}: {m.group(0).strip(_STRIP)!r})"
    return None


def validate_answer(text: str, level: int, num_levels: int) -> tuple[str | None, str]:
    """(normalised critique, "") for a valid answer, else (None, reason)."""
    text = (text or "").strip()
    parsed = parse_rating_level(text, num_levels)
    tail = _TAIL_RE.search(text)
    if parsed is None or tail is None or int(tail.group(1)) != parsed:
        return None, f"answer does not end with '{RATING_PREFIX} N' (1..{num_levels})"
    if parsed != level:
        return None, f"answer gives level {parsed}, requested {level}"
    analysis = text[: tail.start()].strip()
    if RATING_PREFIX in analysis:
        return None, f"answer has more than one '{RATING_PREFIX}'"
    if leak := score_leak(analysis, num_levels):
        return None, leak
    if not analysis:
        return None, "empty analysis"
    # Same shape as the offline critic's critiques: 'Analysis: … Rating Level: N'.
    if not analysis.lower().startswith("analysis:"):
        analysis = "Analysis: " + analysis
    return f"{analysis} {RATING_PREFIX} {level}", ""
