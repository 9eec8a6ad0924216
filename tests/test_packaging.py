"""The wheel holds every package: CI installs editable, which would hide a package
missing from pyproject's explicit list until a user's `pip install`."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _packages_on_disk() -> set[str]:
    found = set()
    for root, dotted in (("benchharness", "benchharness"), ("plugins", "benchharness_plugins")):
        for init in (REPO / root).rglob("__init__.py"):
            relative = init.parent.relative_to(REPO / root)
            found.add(".".join([dotted, *relative.parts]))
    return found


def test_every_package_is_in_pyproject():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    on_disk = _packages_on_disk()
    assert {"benchharness", "benchharness.cli", "benchharness_plugins"} <= on_disk
    assert on_disk == listed
