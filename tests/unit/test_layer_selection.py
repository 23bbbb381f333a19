"""Layer selections ("all", "1-4", "last 2", [1, 3]) and how they are written back (probekit.results.layers)."""
from __future__ import annotations

import pytest

from probekit.results.layers import format_layers, parse_layers, trend_offenders


@pytest.mark.parametrize(("value", "available", "selected"), [
    ("all", range(6), [0, 1, 2, 3, 4, 5]),
    ("1-4", range(6), [1, 2, 3, 4]),
    ("last 2", range(6), [4, 5]),
    ("first 3", range(1, 6), [1, 2, 3]),  # attention layers start at 1
    ("Last  2", range(6), [4, 5]),
    ("1-2, 5", range(6), [1, 2, 5]),
    ("3", range(6), [3]),
    ([1, 2, 5], range(6), [1, 2, 5]),
    (4, range(6), [4]),
])
def test_layer_selections(value, available, selected):
    assert parse_layers(value).resolve(available) == (selected, [])


@pytest.mark.parametrize("value", ["4-1", "1-x", "", "last 0", "every", [], [1, "2"], [-1], True, 1.5])
def test_bad_layer_selections(value):
    with pytest.raises(ValueError):
        parse_layers(value)


def test_missing_layers_are_reported_not_dropped():
    assert parse_layers("5-7").resolve(range(6)) == ([5], [6, 7])
    assert "asks for 8 layers" in parse_layers("last 8").resolve(range(6))[1]


def test_format_layers():
    assert format_layers([1, 2, 3, 5, 7, 8]) == "1-3, 5, 7, 8"
    assert format_layers([4]) == "4"
    assert format_layers([]) == "none"


def test_small_dips_cannot_add_up():
    assert trend_offenders({1: 1.0, 2: 0.99, 3: 0.98, 4: 0.97}, True, tolerance=0.015) == [3, 4]
    assert trend_offenders({1: 1.0, 2: 0.99, 3: 1.2}, True, tolerance=0.015) == []
    assert trend_offenders({1: 3.0, 2: 2.0, 3: 2.5}, False) == [3]
