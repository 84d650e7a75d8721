"""Scanners with zero unsuppressed findings: cfn-lint with the informational I3510, and checkov
on the SAM-transformed template. Every suppression sits in the template's Metadata with its
reason, and every one is still needed.

checkov lives in its own virtualenv (.venv-scan, from requirements-scan.txt: its dependencies
conflict with ours); `make venv` creates it. Without it these tests fail: a security gate that
skips is no gate.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from local_stack.template import ROOT, TEMPLATE_PATH, load_template

from .support import (
    IDENTITY_POLICY_TYPES,
    SCAN_BIN,
    identity_policies,
    transformed_stack,
    transformed_template,
    write_json,
)

CFN_LINT = Path(sys.executable).parent / "cfn-lint"
CHECKOV = SCAN_BIN / "checkov"
TOOL_TIMEOUT_SECONDS = 300
# cfn-lint suppressions (Metadata cfn-lint config ignore_checks), (resource or "template", check) ->
# why. cfn-lint's Metadata has no room for a reason, so it is kept here; the test below keeps
# the two equal.
CFN_LINT_SUPPRESSIONS: dict[tuple[str, str], str] = {}
MIN_REASON_CHARS = 30
# IAM checks checkov must have run on every role (it would otherwise pass a template it never read).
IAM_CHECKS = {"CKV_AWS_60", "CKV_AWS_62", "CKV_AWS_63", "CKV_AWS_107", "CKV_AWS_108", "CKV_AWS_110", "CKV_AWS_111"}


def run(argv: list[str | Path], cwd: Path) -> subprocess.CompletedProcess[str]:
    # The tests talk to loopback only: a scanner that tried to phone home would fail, not leak.
    env = {**os.environ, "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9", "NO_PROXY": ""}
    env.pop("BC_API_KEY", None)
    return subprocess.run(
        [str(arg) for arg in argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT_SECONDS,
        check=False,
    )


def report(completed: subprocess.CompletedProcess[str]) -> str:
    return f"exit {completed.returncode}\n{completed.stdout[-6000:]}\n{completed.stderr[-3000:]}"


# --- cfn-lint ------------------------------------------------------------------------------------


def cfn_lint_i3510(path: Path) -> list[dict[str, Any]]:
    completed = run([CFN_LINT, "--include-checks", "I3510", "--format", "json", "--", path], ROOT)
    # Exit status bits: 2 errors, 4 warnings, 8 informational; 1 means cfn-lint itself failed.
    assert completed.returncode % 2 == 0, report(completed)
    matches: list[dict[str, Any]] = json.loads(completed.stdout or "[]")
    return matches


def test_cfn_lint_with_i3510_finds_nothing() -> None:
    matches = cfn_lint_i3510(TEMPLATE_PATH)
    assert matches == [], json.dumps(matches, indent=1)


def resolved_iam_template() -> dict[str, Any]:
    """Only the transformed template's roles and policies, every intrinsic resolved. I3510
    compares a statement's resource ARNs with the resource types of its actions, but it skips
    a statement whose resources are intrinsic functions: that is every statement of ours, so in
    template.yaml it checks nothing. Resolved, it checks them all."""
    stack = transformed_stack()
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Resources": {
            logical_id: {"Type": stack.resources[logical_id]["Type"], "Properties": stack.properties(logical_id)}
            for logical_id in identity_policies(stack)
        },
    }


def test_i3510_passes_every_resolved_iam_statement(tmp_path: Path) -> None:
    template = resolved_iam_template()
    assert {resource["Type"] for resource in template["Resources"].values()} <= set(IDENTITY_POLICY_TYPES)
    matches = cfn_lint_i3510(write_json(template, tmp_path / "iam.json"))
    assert matches == [], json.dumps(matches, indent=1)


def test_i3510_catches_a_resource_of_the_wrong_type(tmp_path: Path) -> None:
    template = resolved_iam_template()
    dispatch = template["Resources"]["DispatchFunctionRole"]["Properties"]["Policies"][0]["PolicyDocument"]
    record_jobs = next(s for s in dispatch["Statement"] if s.get("Sid") == "RecordJobs")
    record_jobs["Resource"] = "arn:aws:s3:::not-a-table"
    matches = cfn_lint_i3510(write_json(template, tmp_path / "iam.json"))
    assert {match["Rule"]["Id"] for match in matches} == {"I3510"}, matches


def cfn_lint_suppressions(template: dict[str, Any]) -> set[tuple[str, str]]:
    found = {
        ("template", check)
        for check in template.get("Metadata", {}).get("cfn-lint", {}).get("config", {}).get("ignore_checks", [])
    }
    for logical_id, resource in template["Resources"].items():
        config = resource.get("Metadata", {}).get("cfn-lint", {}).get("config", {})
        found |= {(logical_id, check) for check in config.get("ignore_checks", [])}
    return found


def test_cfn_lint_suppressions_are_the_reasoned_ones() -> None:
    assert cfn_lint_suppressions(load_template()) == set(CFN_LINT_SUPPRESSIONS)
    assert all(len(reason) >= MIN_REASON_CHARS for reason in CFN_LINT_SUPPRESSIONS.values())


# --- checkov -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkov() -> Path:
    if not CHECKOV.exists():
        pytest.fail(f"{CHECKOV} is missing: `make venv` installs checkov into .venv-scan (requirements-scan.txt)")
    return CHECKOV


def run_checkov(checkov: Path, template: dict[str, Any], directory: Path) -> dict[str, Any]:
    """checkov's JSON report on a template (offline: --skip-download)."""
    path = write_json(template, directory / "template.json")
    completed = run(
        [checkov, "--file", path, "--framework", "cloudformation", "--output", "json", "--skip-download"], directory
    )
    assert completed.returncode in (0, 1), report(completed)  # 1: failed checks (the tests look at which)
    results = json.loads(completed.stdout)
    assert isinstance(results, dict), results  # one framework: one report
    assert results["summary"]["parsing_errors"] == 0, results["summary"]
    return results


def failures(results: dict[str, Any]) -> list[tuple[str, str]]:
    return sorted((check["check_id"], check["resource"]) for check in results["results"]["failed_checks"])


@pytest.fixture(scope="module")
def checkov_results(checkov: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return run_checkov(checkov, transformed_template(), tmp_path_factory.mktemp("checkov"))


def test_checkov_finds_nothing_unsuppressed_in_the_transformed_template(checkov_results: dict[str, Any]) -> None:
    summary = checkov_results["summary"]
    print(f"checkov {summary['checkov_version']}: {summary['passed']} passed, {summary['skipped']} suppressed")
    assert failures(checkov_results) == []


def test_checkov_ran_its_iam_checks_on_every_role(checkov_results: dict[str, Any]) -> None:
    ran: dict[str, set[str]] = {}
    for check in checkov_results["results"]["passed_checks"] + checkov_results["results"]["failed_checks"]:
        ran.setdefault(check["resource"], set()).add(check["check_id"])
    template = transformed_template()
    function_roles = [
        logical_id
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::IAM::Role" and resource["Properties"].get("Policies")
    ]
    assert function_roles
    for logical_id in function_roles:
        assert ran.get(f"AWS::IAM::Role.{logical_id}", set()) >= IAM_CHECKS, logical_id


def checkov_suppressions(template: dict[str, Any]) -> dict[tuple[str, str], str]:
    """(check id, resource as checkov names it) -> the reason written in the resource's Metadata."""
    found = {}
    for logical_id, resource in template["Resources"].items():
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
            found[(skip["id"], f"{resource['Type']}.{logical_id}")] = skip.get("comment", "")
    return found


def test_every_checkov_suppression_has_a_reason(checkov_results: dict[str, Any]) -> None:
    written = checkov_suppressions(transformed_template())
    for key, reason in written.items():
        assert len(reason) >= MIN_REASON_CHARS, f"{key}: the reason is missing or too short: {reason!r}"
    skipped = {
        (check["check_id"], check["resource"]): check["check_result"].get("suppress_comment", "")
        for check in checkov_results["results"]["skipped_checks"]
    }
    assert skipped == written  # checkov read every suppression where it was written, and no other


def test_every_checkov_suppression_is_still_needed(checkov: Path, tmp_path: Path) -> None:
    """Without the suppressions, exactly the suppressed checks fail: none is stale."""
    bare = copy.deepcopy(transformed_template())
    for resource in bare["Resources"].values():
        resource.get("Metadata", {}).pop("checkov", None)
    assert failures(run_checkov(checkov, bare, tmp_path)) == sorted(checkov_suppressions(transformed_template()))


def test_checkov_catches_a_planted_wildcard(checkov: Path, tmp_path: Path) -> None:
    planted = copy.deepcopy(transformed_template())
    role = planted["Resources"]["DispatchFunctionRole"]["Properties"]
    role["Policies"][0]["PolicyDocument"]["Statement"].append({"Effect": "Allow", "Action": "*", "Resource": "*"})
    found = failures(run_checkov(checkov, planted, tmp_path))
    assert {
        ("CKV_AWS_62", "AWS::IAM::Role.DispatchFunctionRole"),
        ("CKV_AWS_111", "AWS::IAM::Role.DispatchFunctionRole"),
    } <= set(found)
