"""Installed, everything lives under one import name: ``cadence``.

The source folders at the root (grammar/, compiler/, runtime/) are mapped
under ``cadence.`` by setuptools' package-dir; both a regular and an editable
install must give ``cadence.grammar`` etc. and no bare ``grammar`` package.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import ROOT

SETUP = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
PACKAGES: list[str] = SETUP["packages"]
# The folders at the top that are installed as `cadence.NAME`.
FOLDERS = [folder for name, folder in SETUP["package-dir"].items() if name != "cadence"]
PROBE = (
    f"packages = {PACKAGES!r}\nfolders = {FOLDERS!r}\n"
    + """
import importlib.util, json, pathlib
# find_spec imports only the parent packages, and cadence/__init__ imports
# nothing, so this runs without the dependencies (installed with --no-deps).
found = {name: importlib.util.find_spec(name).origin for name in packages}
bare = [name for name in folders if importlib.util.find_spec(name)]
folder = importlib.util.find_spec("cadence.grammar").submodule_search_locations[0]
grammar = (pathlib.Path(folder) / "campaign.lark").is_file()
print(json.dumps({"found": found, "bare": bare, "grammar": grammar}))
"""
)


def project_copy(tmp_path: Path) -> Path:
    """The project's packaging inputs, copied so the install leaves the checkout clean."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for folder in ("cadence", *FOLDERS):
        shutil.copytree(ROOT / folder, source / folder,
                        ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    return source


@pytest.mark.slow
@pytest.mark.parametrize("editable", [False, True], ids=["regular", "editable"])
def test_install_puts_every_folder_under_the_cadence_name(tmp_path: Path, editable: bool) -> None:
    source = project_copy(tmp_path)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    install = [str(python), "-m", "pip", "install", "--quiet", "--no-deps"]
    install += ["-e", str(source)] if editable else [str(source)]
    subprocess.run(install, check=True, cwd=tmp_path, capture_output=True)

    # Run from an empty folder so nothing but the installed package is importable.
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    probe = subprocess.run([str(python), "-c", PROBE], check=True, cwd=empty,
                           capture_output=True, text=True)  # fmt: skip
    report = json.loads(probe.stdout)

    assert report["bare"] == []
    assert report["grammar"] is True
    found = {name: Path(origin) for name, origin in report["found"].items()}
    if editable:
        for folder in FOLDERS:
            assert found[f"cadence.{folder}"] == source / folder / "__init__.py"
    else:
        site = found["cadence"].parent
        assert venv in site.parents
        for name in PACKAGES[1:]:
            assert found[name] == site / name.split(".")[1] / "__init__.py"
    assert found["cadence.reporting"].parent.parent == found["cadence"].parent
