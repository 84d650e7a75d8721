"""Static checks: the SAM template, the state machine definitions, lint, types and the
sample events. Every tool runs from this test run's virtualenv, offline, with its caches
off (the checks run in parallel and leave nothing in the repository)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from local_stack import resources
from local_stack.template import ROOT, TEMPLATE_PATH, Stack

BIN = Path(sys.executable).parent
TOOL_TIMEOUT_SECONDS = 300
STACK = Stack()
# Directories of Python the repository holds (tools and caches excluded).
SKIPPED_DIRS = {".venv", ".aws-sam", ".git", "node_modules"}
PYTHON_DIRS = sorted(
    path.name
    for path in ROOT.iterdir()
    if path.is_dir() and path.name not in SKIPPED_DIRS and not path.name.startswith(".") and any(path.rglob("*.py"))
)
PYTHON_FILES_AT_ROOT = sorted(path.name for path in ROOT.glob("*.py"))
SRC_PACKAGES = sorted(path.parent.name for path in (ROOT / "src").glob("*/__init__.py"))
STATE_MACHINES = {
    logical_id: resource["Properties"]["DefinitionUri"]
    for logical_id, resource in STACK.resources.items()
    if resource["Type"] == "AWS::Serverless::StateMachine" and "DefinitionUri" in resource.get("Properties", {})
}
EVENT_FILES = sorted(str(path.relative_to(ROOT)) for path in (ROOT / "events").rglob("*.json"))


def run(argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    """A tool from the virtualenv, in the repository root, bounded in time."""
    return subprocess.run(
        argv,
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT_SECONDS,
        check=False,
    )


def report(completed: subprocess.CompletedProcess[str]) -> str:
    return f"exit {completed.returncode}\n{completed.stdout}\n{completed.stderr}"


# --- template ----------------------------------------------------------------------------------


def test_sam_validate_lint():
    completed = run(
        [str(BIN / "sam"), "validate", "--lint", "--template-file", str(TEMPLATE_PATH)],
        AWS_DEFAULT_REGION="us-east-1",
        SAM_CLI_TELEMETRY="0",
    )
    assert completed.returncode == 0, report(completed)


def test_cfn_lint_template():
    completed = run([str(BIN / "cfn-lint"), str(TEMPLATE_PATH)])
    assert completed.returncode == 0, report(completed)


# --- state machine definitions -------------------------------------------------------------------
# cfn-lint does not look into AWS::Serverless::StateMachine definitions (DefinitionUri or
# inline); as the Definition of a plain AWS::StepFunctions::StateMachine its E3601 checks them.


def test_every_definition_file_belongs_to_a_state_machine():
    on_disk = {str(path.relative_to(ROOT)) for path in (ROOT / "statemachine").glob("*.asl.json")}
    assert on_disk
    assert on_disk == set(STATE_MACHINES.values())


def definition_of(logical_id: str) -> dict[str, Any]:
    """The definition with the template's DefinitionSubstitutions applied, as SAM deploys it."""
    definition: dict[str, Any] = json.loads(resources.state_machine_definition(STACK, logical_id))
    return definition


def cfn_lint_definition(definition: dict[str, Any], directory: Path) -> subprocess.CompletedProcess[str]:
    template = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Resources": {
            "StateMachine": {
                "Type": "AWS::StepFunctions::StateMachine",
                "Properties": {
                    "RoleArn": f"arn:aws:iam::{STACK.account}:role/run-job-states",
                    "Definition": definition,
                },
            }
        },
    }
    path = directory / "state-machine.json"
    path.write_text(json.dumps(template, indent=1), encoding="utf-8")
    return run([str(BIN / "cfn-lint"), str(path)])


@pytest.mark.parametrize("logical_id", sorted(STATE_MACHINES))
def test_state_machine_definition_passes_cfn_lint(logical_id, tmp_path):
    completed = cfn_lint_definition(definition_of(logical_id), tmp_path)
    assert completed.returncode == 0, report(completed)


def _unknown_state_type(definition: dict[str, Any]) -> None:
    first = definition["States"][definition["StartAt"]]
    first["Type"] = first["Type"] + "x"


def _start_at_nowhere(definition: dict[str, Any]) -> None:
    definition["StartAt"] = "NoSuchState"


def _retry_attempts_as_text(definition: dict[str, Any]) -> None:
    task = next(state for state in definition["States"].values() if "Retry" in state)
    task["Retry"][0]["MaxAttempts"] = "three"


@pytest.mark.parametrize("breakage", [_unknown_state_type, _start_at_nowhere, _retry_attempts_as_text])
@pytest.mark.parametrize("logical_id", sorted(STATE_MACHINES))
def test_the_definition_check_catches_a_broken_definition(
    logical_id, breakage: Callable[[dict[str, Any]], None], tmp_path
):
    broken = copy.deepcopy(definition_of(logical_id))
    breakage(broken)
    completed = cfn_lint_definition(broken, tmp_path)
    assert completed.returncode != 0
    assert "E3601" in completed.stdout, report(completed)


# --- Python ------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", PYTHON_DIRS + PYTHON_FILES_AT_ROOT)
def test_ruff_check(target):
    completed = run([str(BIN / "ruff"), "check", "--no-cache", target])
    assert completed.returncode == 0, report(completed)


@pytest.mark.parametrize("target", PYTHON_DIRS + PYTHON_FILES_AT_ROOT)
def test_ruff_format(target):
    completed = run([str(BIN / "ruff"), "format", "--no-cache", "--check", target])
    assert completed.returncode == 0, report(completed)


def test_the_deployable_code_is_found():
    assert "dispatch" in SRC_PACKAGES
    assert "src" in PYTHON_DIRS


def test_mypy_strict(tmp_path):
    """Every package of the deployable code, as Lambda imports it: src/ is the code root
    (CodeUri), so packages import each other by name (MYPYPATH=src). One run: they share
    most of their imports."""
    completed = run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--cache-dir",
            str(tmp_path / "mypy"),
            *(f"src/{package}" for package in SRC_PACKAGES),
        ],
        MYPYPATH="src",
    )
    assert completed.returncode == 0, report(completed)
    checked = sum(len(list((ROOT / "src" / package).rglob("*.py"))) for package in SRC_PACKAGES)
    assert f"no issues found in {checked} source files" in completed.stdout, completed.stdout


# --- sample events -------------------------------------------------------------------------------


def _refuse(kind: str) -> Callable[..., Any]:
    def refuse(*args: Any) -> Any:
        raise ValueError(f"{kind}: {args[0]!r}")

    return refuse


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        raise ValueError(f"duplicate keys: {duplicates}")
    return dict(pairs)


def test_there_are_sample_events():
    assert any(name.startswith("events/dispatch/") for name in EVENT_FILES)
    assert any(name.startswith("events/requests/") for name in EVENT_FILES)


@pytest.mark.parametrize("name", EVENT_FILES)
def test_event_file_is_strict_json(name):
    """Parses as the JSON AWS accepts: no NaN/Infinity, no duplicate keys, UTF-8."""
    text = (ROOT / name).read_bytes().decode("utf-8")
    json.loads(text, parse_constant=_refuse("not JSON"), object_pairs_hook=_no_duplicate_keys)
