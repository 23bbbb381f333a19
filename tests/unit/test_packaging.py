"""A non-editable install ships every package: pyproject lists each folder of probekit/ and plugins/ that is a package."""
from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_is_listed_in_pyproject():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "probekit").rglob("__init__.py")}
    # plugins/ installs as probekit.plugins (package-dir), with the packages of plugins that ship a payload.
    found |= {".".join(("probekit", *init.parent.relative_to(ROOT).parts)) for init in (ROOT / "plugins").rglob("__init__.py")}
    assert found - listed == set(), f"packages missing from pyproject.toml [tool.setuptools] packages: {found - listed}"
    assert listed - found == set(), f"pyproject.toml lists packages that do not exist: {listed - found}"
