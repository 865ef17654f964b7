"""Packaging: every package folder ships, the built-in themes included."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_every_package_is_listed_in_pyproject():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        ".".join(path.parent.relative_to(ROOT).parts)
        for path in (ROOT / "newsletter").rglob("__init__.py")
    }
    assert found <= listed, f"missing from pyproject.toml: {sorted(found - listed)}"
    assert "newsletter.templates" in listed


def test_builtin_templates_are_importable_package_data():
    from importlib.resources import files

    assert any(entry.name == "default" for entry in files("newsletter.templates").iterdir())
