"""The one validator: a frozen dataclass from a TOML table, every problem at once with its key path."""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from typing import Annotated, Literal

import pytest

from probekit.declare import SIZE, Invalid, between, format_size, parse, parse_size, positive
from probekit.engine.cache_admin import parse_size as max_size
from probekit.errors import UserError


@dataclass(frozen=True)
class Layer:
    index: Annotated[int, between(0, 99, "a layer from 0 to 99")]
    weight: float = 1.0


@dataclass(frozen=True)
class Section:
    mode: Literal["fast", "exact"] = "exact"
    count: Annotated[int, positive] = 4
    share: Annotated[float, between(0, 1, "a fraction in [0, 1]")] = 0.5
    memory: Annotated[int | None, SIZE] = None
    names: tuple[str, ...] = ()
    inner: Layer = field(default_factory=lambda: Layer(0))
    layers: tuple[Layer, ...] = ()


def problems(text: str) -> list[str]:
    found: list = []
    assert parse(Section, tomllib.loads(text), "section", found) is None
    return [str(p) for p in found]


def test_a_table_builds_its_dataclass_with_the_defaults_stated_once():
    section = parse(Section, tomllib.loads('mode = "fast"\ncount = 2\nshare = 1\nmemory = "2KiB"\nnames = ["a"]\n'
                                           "[inner]\nindex = 3\n[[layers]]\nindex = 1\n[[layers]]\nindex = 2\nweight = 0.5\n"),
                    "section", [])
    assert section == Section("fast", 2, 1.0, 2048, ("a",), Layer(3), (Layer(1), Layer(2, 0.5)))
    assert isinstance(section.share, float) and parse(Section, {}, "section", []) == Section()


def test_every_problem_at_once_with_key_paths_and_one_did_you_mean():
    assert problems('mode = "fats"\ncount = 0\nshare = true\nmemory = "lots"\ncuont = 1\n[inner]\nindex = 120\n'
                    '[[layers]]\nindx = 1\n') == [
        "section.cuont: found an unknown key; expected one of mode, count, share, memory, names, inner, layers "
        "(did you mean 'count'?)",
        "section.mode: found 'fats'; expected one of 'fast', 'exact' (did you mean 'fast'?)",
        "section.count: found 0; expected a positive number",
        "section.share: found a boolean True; expected a fraction in [0, 1]",
        "section.memory: found 'lots'; expected a size such as \"8GB\" (8 x 10^9 bytes), \"8GiB\" (8 x 2^30), "
        "\"512MB\", \"512MiB\"",
        "section.inner.index: found 120; expected a layer from 0 to 99",
        # a typo of a required key is reported once, as the typo
        "section.layers[0].indx: found an unknown key; expected one of index, weight (did you mean 'index'?)",
    ]


def test_one_size_language_everywhere():
    assert parse_size("8GB") == 8 * 10**9 and parse_size("8GiB") == 8 * 2**30 and parse_size("512") == 512
    assert parse_size("1.5 mb") == 1_500_000 and parse_size("100k") == 100_000 and max_size("2GiB") == 2 * 2**30
    assert format_size(parse_size("1KB")) == "1.0 kB"  # [run] memory = "1KB" is never "0.00 GB"
    for bad in ("", "GB", "-1GB", "0", "8 parsecs"):
        with pytest.raises(Invalid):
            parse_size(bad)
    with pytest.raises(UserError, match="--max-size 'x': expected a size such as"):
        max_size("x")
