import re

import numpy as np
from PIL import Image

from aesthetic_llm.critic import phrase_bank, write_critique
from aesthetic_llm.levels import parse_rating_level
from aesthetic_llm.measure import measure
from aesthetic_llm.train.datasets import near_level_pairs, sft_records


def _annotation(level: int, image_id: str = "x") -> dict:
    img = Image.fromarray((np.random.default_rng(level).random((56, 56, 3)) * 255).astype("uint8"))
    props = measure(img)
    return {
        "image_id": image_id,
        "path": f"{image_id}.png",
        "level": level,
        "critique": write_critique(props, level, 10),
        "properties": props.as_dict(),
    }


def test_critique_format_and_no_numbers_in_analysis():
    for level in range(1, 11):
        text = _annotation(level)["critique"]
        assert text.startswith("Analysis: ")
        assert text.endswith(f"Rating Level: {level}")
        assert parse_rating_level(text, 10) == level
        analysis = text.split("Rating Level:")[0]
        assert not re.search(r"\d", analysis), analysis
    assert len(set(phrase_bank())) == len(phrase_bank())


def test_sft_records_are_sharegpt_with_one_image_placeholder():
    rec = sft_records([_annotation(7)], 10)[0]
    assert rec["messages"][0]["role"] == "user" and rec["messages"][0]["content"].count("<image>") == 1
    assert rec["messages"][1] == {"role": "assistant", "content": _annotation(7)["critique"]}
    assert rec["images"] == ["x.png"]


def test_near_level_pairs_differ_only_in_verdict_and_level():
    anns = [_annotation(lv, f"i{lv}") for lv in range(1, 11)]
    pairs = near_level_pairs(anns, 10, offsets=[1, 2], per_image=2, seed=0)
    assert len(pairs) == 20
    for p, a in zip(pairs, [a for a in anns for _ in range(2)], strict=True):
        chosen, rejected = p["chosen"]["content"], p["rejected"]["content"]
        true, wrong = parse_rating_level(chosen, 10), parse_rating_level(rejected, 10)
        assert true == a["level"] and 1 <= abs(wrong - true) <= 2 and abs(wrong - true) == p["level_gap"]
        # Same measured description; only the final verdict sentence and the level change.
        assert chosen.split(" Overall")[0] == rejected.split(" Overall")[0]
