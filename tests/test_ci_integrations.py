"""The pre-commit hooks and the GitHub Action in the repository do what they
say: the hooks run through pre-commit itself, the Action's script runs as a
runner would run it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from pre_commit.clientlib import load_manifest

from tests.conftest import CASES, EXAMPLES, ROOT

BROKEN = CASES / "parse" / "misspelled-property.campaign"
MESSY = CASES / "fmt" / "messy-layout.campaign"
WARNED = (
    'campaign "w" {\n  day 1 {\n    call ring { notes "n" }\n    email hi {\n'
    '      send with previous\n      subject "s"\n      body "b"\n    }\n  }\n}\n'
)


def git(folder: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=folder, check=True, capture_output=True,
    )  # fmt: skip


def test_the_hooks_manifest_is_valid_for_pre_commit() -> None:
    hooks = {hook["id"]: hook for hook in load_manifest(str(ROOT / ".pre-commit-hooks.yaml"))}
    assert set(hooks) == {"cadence-check", "cadence-fmt"}
    assert all(hook["files"] == r"\.campaign$" for hook in hooks.values())


@pytest.mark.slow
def test_pre_commit_runs_the_hooks_on_campaign_files(tmp_path: Path) -> None:
    """pre-commit installs cadence from this repository into its own
    environment (from the package registry) and runs each hook."""
    source = tmp_path / "cadence"
    shutil.copytree(
        ROOT, source,
        ignore=shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.egg-info", ".*_cache"),
    )  # fmt: skip
    git(source, "init", "-q")
    git(source, "add", "-A")
    git(source, "commit", "-q", "-m", "cadence")
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(BROKEN, project / "broken.campaign")
    shutil.copy(MESSY, project / "messy.campaign")
    (project / "t.j2").write_text("A title")
    git(project, "init", "-q")
    git(project, "add", "-A")
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home")}

    def hook(name: str, *files: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "pre_commit", "try-repo", str(source), name,
                   "--files", *files]  # fmt: skip
        return subprocess.run(command, cwd=project, env=env, capture_output=True, text=True)

    checked = hook("cadence-check", "broken.campaign", "messy.campaign")
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "broken.campaign:4:7: P020 error" in checked.stdout
    formatted = hook("cadence-fmt", "messy.campaign")
    assert formatted.returncode == 1  # it changed a file: the commit stops
    assert (project / "messy.campaign").read_text() == (
        CASES / "fmt" / "messy-layout.expected"
    ).read_text()
    assert hook("cadence-fmt", "messy.campaign").returncode == 0


def action_step(step_id: str) -> dict[str, Any]:
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    assert action["runs"]["using"] == "composite"
    return next(step for step in action["runs"]["steps"] if step.get("id") == step_id)


def run_check_step(folder: Path, inputs: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The Action's check step as a runner runs it: its script in bash, its
    inputs in the variables its `env` names, cadence on the PATH."""
    step = action_step("check")
    defaults = yaml.safe_load((ROOT / "action.yml").read_text())["inputs"]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for variable, expression in step["env"].items():
        name = expression.removeprefix("${{ inputs.").removesuffix(" }}")
        env[variable] = inputs.get(name, defaults[name].get("default", ""))
    return subprocess.run(
        ["bash", "-e", "-c", step["run"]], cwd=folder, env=env, capture_output=True, text=True
    )


def test_the_action_annotates_problems_and_fails_on_errors(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLES, tmp_path / "campaigns")
    shutil.copy(BROKEN, tmp_path / "campaigns" / "broken.campaign")
    result = run_check_step(tmp_path, {"paths": "campaigns"})
    assert result.returncode == 1, result.stderr
    assert result.stdout.startswith("::error file=campaigns/broken.campaign,line=4,col=7,")
    (tmp_path / "campaigns" / "broken.campaign").unlink()
    assert run_check_step(tmp_path, {"paths": "campaigns"}).returncode == 0


def test_the_action_can_fail_on_warnings_and_write_sarif(tmp_path: Path) -> None:
    (tmp_path / "warned.campaign").write_text(WARNED)
    assert run_check_step(tmp_path, {"paths": "warned.campaign"}).returncode == 0
    strict = run_check_step(
        tmp_path,
        {"paths": "warned.campaign", "warnings-as-errors": "true", "sarif": "out.sarif"},
    )
    assert strict.returncode == 1
    assert "::warning file=warned.campaign" in strict.stdout
    sarif = json.loads((tmp_path / "out.sarif").read_text())
    assert sarif["runs"][0]["results"][0]["ruleId"] == "C005"


def test_the_action_never_runs_what_its_inputs_hold(tmp_path: Path) -> None:
    (tmp_path / "a.campaign").write_text(WARNED)
    result = run_check_step(tmp_path, {"paths": "a.campaign $(touch pwned) `touch pwned2` *"})
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "pwned2").exists()
    assert result.returncode == 2  # the words are paths, and no such files exist
