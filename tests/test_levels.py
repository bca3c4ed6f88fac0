import pytest

from aesthetic_llm.levels import level_labels, level_to_mos, mos_to_level, parse_rating_level


@pytest.mark.parametrize(("mos", "level"), [(1.0, 1), (1.49, 1), (1.51, 2), (5.5, 6), (9.6, 10), (12.0, 10), (-3, 1)])
def test_mos_to_level_ten_levels(mos, level):
    assert mos_to_level(mos, 10) == level


def test_level_centres_round_trip_for_any_level_count():
    for n in (2, 5, 10, 11):
        for level in range(1, n + 1):
            assert mos_to_level(level_to_mos(level, n), n) == level
        assert level_to_mos(1, n) == 1.0 and level_to_mos(n, n) == 10.0


def test_parse_rating_level_takes_the_last_valid_one():
    assert parse_rating_level("Analysis: fine. Rating Level: 7", 10) == 7
    assert parse_rating_level("Rating Level: 3 ... Rating Level: 10", 10) == 10
    assert parse_rating_level("Rating Level: 11", 10) is None
    assert parse_rating_level("no level here", 10) is None
    assert level_labels(3) == ["1", "2", "3"]
