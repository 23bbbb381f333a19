"""Every spec shipped in specs/ validates (the paper-scale ones cannot run offline; they are checked)."""
from __future__ import annotations

from pathlib import Path

import pytest

from probekit.cli import main

SPECS = sorted(p for p in (Path(__file__).resolve().parents[2] / "specs").rglob("*.toml")
               if "shared" not in p.parts)  # specs/shared/ holds files the specs include, not specs


def test_specs_exist():
    assert "seed_consistency.toml" in {p.name for p in SPECS}


@pytest.mark.parametrize("spec", SPECS, ids=[str(p.relative_to(p.parents[1])) for p in SPECS])
def test_spec_validates(spec, capsys):
    assert main(["check", str(spec)]) == 0, capsys.readouterr().out
