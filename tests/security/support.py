"""The template as CloudFormation will see it after the SAM transform, and the IAM it grants.

checkov and the least-privilege tests read the TRANSFORMED template: SAM turns a function's or
state machine's `Policies` into an AWS::IAM::Role only during the transform, and checkov skips
SAM's inline policies. `sam validate` does that transform offline (samtranslator, shipped with
aws-sam-cli); this module asks it for the result. local_stack.template.Stack then resolves the
intrinsics, so ARNs are compared as the local stack deploys them (stack run-job, us-east-1).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import yaml
from cfnlint.data import AdditionalSpecs
from cfnlint.helpers import load_resource
from samcli.lib.translate.sam_template_validator import SamTemplateValidator

from dispatch.catalog import JobType
from dispatch.jobs import TaskContext, job_item
from dispatch.request import validated
from local_stack.template import ROOT, Stack, load_template
from tests.host.host_harness import TOKEN, Host, Result

REGION = "us-east-1"
IDENTITY_POLICY_TYPES = ("AWS::IAM::Role", "AWS::IAM::ManagedPolicy", "AWS::IAM::Policy")
SCAN_BIN = ROOT / ".venv-scan" / "bin"
AWS_MANAGED_POLICY = "arn:aws:iam::aws:policy/"


class OfflineManagedPolicies:
    """Stands in for samtranslator's ManagedPolicyLoader. SAM looks AWS managed policies that a
    `Policies` list names (not by ARN) up in IAM; the template names none. Should one be added,
    the transform stops here instead of calling IAM."""

    def load(self) -> dict[str, str]:
        raise RuntimeError("a SAM Policies list names an AWS managed policy: give its ARN instead (offline transform)")


@functools.cache
def transformed_template() -> dict[str, Any]:
    """template.yaml after the SAM transform, exactly as `sam validate` produces it (local
    CodeUri/DefinitionUri become placeholder S3 locations, as `sam package` would make them)."""
    validator = SamTemplateValidator(load_template(), OfflineManagedPolicies(), region=REGION)
    transformed: dict[str, Any] = yaml.safe_load(validator.get_translated_template_if_valid())
    return transformed


def transformed_stack() -> Stack:
    """A Stack over the transformed template (a fresh copy: callers may change it)."""
    return Stack(region=REGION, template=json.loads(json.dumps(transformed_template())))


def write_json(template: dict[str, Any], path: Path) -> Path:
    path.write_text(json.dumps(template, indent=1), encoding="utf-8")
    return path


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def identity_policies(stack: Stack) -> list[str]:
    """Logical ids of every resource that grants permissions to a principal."""
    return sorted(
        logical_id for logical_id, resource in stack.resources.items() if resource["Type"] in IDENTITY_POLICY_TYPES
    )


def statements(stack: Stack, logical_id: str) -> list[dict[str, Any]]:
    """The resolved statements a role (inline policies) or a policy resource holds, with Action,
    NotAction, Resource and NotResource always lists."""
    properties = stack.properties(logical_id)
    documents = (
        [policy["PolicyDocument"] for policy in properties.get("Policies", [])]
        if stack.resources[logical_id]["Type"] == "AWS::IAM::Role"
        else [properties["PolicyDocument"]]
    )
    found = []
    for document in documents:
        for statement in as_list(document["Statement"]):
            normal = dict(statement)
            for key in ("Action", "NotAction", "Resource", "NotResource"):
                if key in normal:
                    normal[key] = as_list(normal[key])
            found.append(normal)
    return found


def role_statements(stack: Stack, role: str) -> list[dict[str, Any]]:
    """Everything a role may do that the template itself defines: its inline policies and the
    template's managed policies attached to it (AWS managed policies are listed apart)."""
    attached = set(stack.properties(role).get("ManagedPolicyArns", []))
    own = [
        logical_id
        for logical_id in identity_policies(stack)
        if stack.resources[logical_id]["Type"] == "AWS::IAM::ManagedPolicy"
        and stack.resolve({"Ref": logical_id}) in attached
    ]
    return statements(stack, role) + [statement for policy in own for statement in statements(stack, policy)]


def aws_managed_policies(stack: Stack, role: str) -> set[str]:
    """Names of the AWS managed policies attached to a role."""
    arns = stack.properties(role).get("ManagedPolicyArns", [])
    return {arn.removeprefix(AWS_MANAGED_POLICY) for arn in arns if arn.startswith(AWS_MANAGED_POLICY)}


def roles(stack: Stack) -> list[str]:
    return [
        logical_id for logical_id in identity_policies(stack) if stack.resources[logical_id]["Type"] == "AWS::IAM::Role"
    ]


def allows(statement: dict[str, Any], action: str) -> bool:
    return statement["Effect"] == "Allow" and action in statement.get("Action", [])


def documented_resource_types(action: str) -> list[str] | None:
    """The resource types AWS's Service Authorization Reference lists for an action (cfn-lint
    ships it as data): [] when the action supports no resource-level permissions, None when the
    action is not in the data at all."""
    service, name = action.lower().split(":", 1)
    policies: dict[str, Any] = load_resource(AdditionalSpecs, "Policies.json")
    entry = policies.get(service, {}).get("Actions", {}).get(name)
    if entry is None:
        return None
    return list(as_list(entry.get("Resources", [])))


def run_on_host(host: Host, job_type: JobType, job_input: dict[str, Any]) -> tuple[Result, dict[str, Any]]:
    """A job of `job_type` through the real chain: the dispatch code's request checks and job
    record (dispatch.request, dispatch.jobs), then the REAL run-container script under bash
    (tests/host/host_harness.py) reading that record. Returns the run and the record."""
    valid = validated({"jobType": job_type.name, "input": job_input}, lambda _name: job_type)
    task = TaskContext(
        token=TOKEN,
        execution_arn=f"arn:aws:states:{REGION}:123456789012:execution:run-job:security",
        state_name="RunJob",
        state_entered_time="2025-01-01T00:00:00.000Z",
        retry_count=0,
    )
    record = job_item(task, valid, "i-0123456789abcdef0")
    host.scenario["record"] = record
    return host.run(params={"JobId": task.job_id}), record
