"""Packaging: the wheel and the sdist are built and their contents checked.

The build runs offline with the build backend installed in this environment
(``python -m build --no-isolation``; the test extra installs ``build`` and
``setuptools``), so it needs no network.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import newsletter
import pytest

ROOT = Path(__file__).parent.parent
THEMES = sorted(path.name for path in (ROOT / "templates").iterdir() if path.is_dir())


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """The wheel and the sdist of this checkout, and the build's output."""
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    [wheel] = out.glob("*.whl")
    [sdist] = out.glob("*.tar.gz")
    return {"wheel": wheel, "sdist": sdist, "log": result.stdout + result.stderr}


def test_every_package_is_listed_in_pyproject():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        ".".join(path.parent.relative_to(ROOT).parts)
        for path in (ROOT / "newsletter").rglob("__init__.py")
    }
    themes = {"newsletter.templates", *(f"newsletter.templates.{theme}" for theme in THEMES)}
    assert found <= listed, f"missing from pyproject.toml: {sorted(found - listed)}"
    assert themes <= listed, f"missing from pyproject.toml: {sorted(themes - listed)}"


def test_builtin_templates_are_importable_package_data():
    from importlib.resources import files

    assert any(entry.name == "default" for entry in files("newsletter.templates").iterdir())


@pytest.mark.slow
def test_the_build_prints_no_setuptools_warning(built):
    # the only "warning" lines left are build_py/install_lib's note that byte-compiling is off
    warnings = [line for line in built["log"].splitlines()
                if "warn" in line.lower() and "byte-compiling is disabled" not in line]
    assert warnings == []


@pytest.mark.slow
def test_the_wheel_holds_the_code_the_themes_and_the_licence_but_no_tests(built):
    names = zipfile.ZipFile(built["wheel"]).namelist()
    assert built["wheel"].name == f"newsletter-{newsletter.__version__}-py3-none-any.whl"
    for theme in THEMES:
        shipped = {Path(name).name for name in names if name.startswith(f"newsletter/templates/{theme}/")}
        assert shipped == {p.name for p in (ROOT / "templates" / theme).iterdir() if p.is_file()}, theme
    assert "newsletter/store/migrations/env.py" in names and "newsletter/cli/__init__.py" in names
    assert "newsletter/py.typed" in names  # PEP 561: type checkers read the package's hints
    assert f"newsletter-{newsletter.__version__}.dist-info/licenses/LICENSE" in names
    assert not [name for name in names if name.startswith("tests/") or "/tests/" in name or "conftest" in name]
    metadata = zipfile.ZipFile(built["wheel"]).read(f"newsletter-{newsletter.__version__}.dist-info/METADATA")
    assert b"\nLicense-Expression: MIT\n" in metadata and b"\nLicense-File: LICENSE\n" in metadata


@pytest.mark.slow
def test_the_sdist_holds_the_sources_the_themes_and_the_licence(built):
    top = f"newsletter-{newsletter.__version__}"
    names = set(tarfile.open(built["sdist"]).getnames())
    assert {f"{top}/LICENSE", f"{top}/README.md", f"{top}/pyproject.toml"} <= names
    assert {f"{top}/templates/{theme}/email.mjml.j2" for theme in ("default", "plain")} <= names
    assert f"{top}/newsletter/__init__.py" in names


def test_the_version_has_one_source(cli):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and project["project"]["dynamic"] == ["version"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "newsletter.__version__"}
    shown = cli("--version")
    assert shown.exit_code == 0 and shown.stdout.strip() == f"newsletter, version {newsletter.__version__}"
