"""Least privilege, asserted on the SAM-transformed template (the roles CloudFormation creates),
with every intrinsic resolved as the local stack deploys it (stack run-job, us-east-1)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from .support import (
    allows,
    aws_managed_policies,
    documented_resource_types,
    identity_policies,
    role_statements,
    roles,
    statements,
    transformed_stack,
)

STACK = transformed_stack()
REGION, ACCOUNT = STACK.region, STACK.account
POLICIES = identity_policies(STACK)
ROLES = roles(STACK)
STATE_MACHINES = [
    STACK.physical_name(logical_id)
    for logical_id, resource in STACK.resources.items()
    if resource["Type"] == "AWS::StepFunctions::StateMachine"
]
SECRETS_PREFIX = STACK.parameter("JobSecretsPrefix")
# The only secrets a worker instance may read: those job types reference, under JobSecretsPrefix.
JOB_SECRETS = {
    "secretsmanager:GetSecretValue": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{SECRETS_PREFIX}*",
    "ssm:GetParameter": f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/{SECRETS_PREFIX}*",
}
POOL_CONDITION = {"StringEquals": {"ssm:resourceTag/run-job:pool": STACK.parameter("WorkerPoolName")}}
POOL_INSTANCES = f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/*"
SEND_TASK = {"states:SendTaskSuccess", "states:SendTaskFailure", "states:SendTaskHeartbeat"}
SECRET_READS = ("secretsmanager:", "ssm:GetParameter", "kms:")

# The only actions allowed on Resource "*": AWS documents no resource-level permissions for
# them (checked below against the Service Authorization Reference data cfn-lint ships), and
# this is who needs each one.
STAR_ACTIONS = {
    "ssm:DescribeInstanceInformation": "dispatch: find the pool's online instances (filtered by the pool tag)",
    "ec2:DescribeTags": "dispatch: read each online instance's run-job:slots tag",
    "ssm:CancelCommand": "reaper: cancel the command of a job whose execution ended",
    "ssm:ListCommands": "reaper: find a job's command",
    "ssm:ListCommandInvocations": "reaper: read a command's status on the sweep",
    "states:SendTaskFailure": "reaper, host guard, callback wrapper: authorized on the task token itself",
    "states:SendTaskSuccess": "host guard, callback wrapper: authorized on the task token itself",
    "states:SendTaskHeartbeat": "callback wrapper: authorized on the task token itself",
    "ecr:GetAuthorizationToken": "host side: docker login to ECR (the pull itself is scoped to the repository)",
    **dict.fromkeys(
        [
            "logs:CreateLogDelivery",
            "logs:GetLogDelivery",
            "logs:UpdateLogDelivery",
            "logs:DeleteLogDelivery",
            "logs:ListLogDeliveries",
            "logs:PutResourcePolicy",
            "logs:DescribeResourcePolicies",
            "logs:DescribeLogGroups",
        ],
        "state machine: deliver its execution logs (the policy Step Functions documents for logging)",
    ),
}

# AWS managed policies a role may carry, and why.
AWS_MANAGED = {
    "DispatchFunctionRole": {
        "service-role/AWSLambdaBasicExecutionRole": "SAM adds it: the function's own log group",
        "AWSXrayWriteOnlyAccess": "SAM adds it for Tracing: Active",
    },
    "ReaperFunctionRole": {
        "service-role/AWSLambdaBasicExecutionRole": "SAM adds it: the function's own log group",
        "AWSXrayWriteOnlyAccess": "SAM adds it for Tracing: Active",
    },
    "RunJobStateMachineRole": {"AWSXrayWriteOnlyAccess": "SAM adds it for Tracing: Enabled"},
    "RunBatchStateMachineRole": {"AWSXrayWriteOnlyAccess": "SAM adds it for Tracing: Enabled"},
    "WorkerInstanceRole": {
        "AmazonSSMManagedInstanceCore": "the SSM agent that runs the documents (README, docs/design.md: IAM)",
    },
}
TRUSTED_SERVICE = {
    "DispatchFunctionRole": "lambda.amazonaws.com",
    "ReaperFunctionRole": "lambda.amazonaws.com",
    "RunJobStateMachineRole": "states.amazonaws.com",
    "RunBatchStateMachineRole": "states.amazonaws.com",
    "WorkerInstanceRole": "ec2.amazonaws.com",
}


def every_statement() -> list[tuple[str, dict[str, Any]]]:
    return [(logical_id, statement) for logical_id in POLICIES for statement in statements(STACK, logical_id)]


def document_arn(logical_id: str) -> str:
    return f"arn:aws:ssm:{REGION}:{ACCOUNT}:document/{STACK.physical_name(logical_id)}"


def test_the_transformed_template_holds_every_principal() -> None:
    """Guards the tests below against passing on an empty or half-read template."""
    assert set(TRUSTED_SERVICE) <= set(ROLES)
    assert "WorkerInstancePolicy" in POLICIES
    assert all(statements(STACK, logical_id) for logical_id in POLICIES if logical_id != "WorkerInstanceRole")


@pytest.mark.parametrize("role", ROLES)
def test_each_role_trusts_exactly_its_service(role: str) -> None:
    trust = STACK.properties(role)["AssumeRolePolicyDocument"]["Statement"]
    assert [statement["Effect"] for statement in trust] == ["Allow"]
    principal = trust[0]["Principal"]
    assert set(principal) == {"Service"}
    assert principal["Service"] in (TRUSTED_SERVICE[role], [TRUSTED_SERVICE[role]])
    assert trust[0]["Action"] in ("sts:AssumeRole", ["sts:AssumeRole"])


@pytest.mark.parametrize("logical_id", POLICIES)
def test_no_wildcard_or_negated_action(logical_id: str) -> None:
    for statement in statements(STACK, logical_id):
        assert statement["Effect"] == "Allow", statement  # identity policies only grant
        assert "NotAction" not in statement
        assert "NotResource" not in statement
        for action in statement["Action"]:
            assert re.fullmatch(r"[a-z0-9-]+:[A-Za-z0-9]+", action), f"{logical_id}: {action!r} is a wildcard"


def test_resource_star_only_for_actions_aws_documents_without_resource_level_permissions() -> None:
    used = set()
    for logical_id, statement in every_statement():
        if "*" not in statement["Resource"]:
            continue
        assert statement["Resource"] == ["*"], f"{logical_id}: '*' beside narrower resources hides them"
        for action in statement["Action"]:
            assert action in STAR_ACTIONS, f"{logical_id}: {action} on '*' (scope it to its resources)"
            used.add(action)
    assert used == set(STAR_ACTIONS), "STAR_ACTIONS lists an action no statement grants on '*' any more"


@pytest.mark.parametrize("action", sorted(STAR_ACTIONS))
def test_allow_listed_action_has_no_resource_level_permissions(action: str) -> None:
    """If AWS adds resource types to one of these (cfn-lint's data follows the reference), this
    fails: then scope the statement and take the action off the list."""
    assert documented_resource_types(action) == []


def test_send_command_only_for_our_documents_and_to_pool_instances() -> None:
    documents: dict[str, set[str]] = {}
    instances: set[str] = set()
    for logical_id, statement in every_statement():
        if not allows(statement, "ssm:SendCommand"):
            continue
        # Alone in its statement: the pool condition must scope nothing else, and nothing unscoped rides along.
        assert statement["Action"] == ["ssm:SendCommand"], statement
        if statement["Resource"] == [POOL_INSTANCES]:
            assert statement.get("Condition") == POOL_CONDITION, f"{logical_id}: instances without the pool tag"
            instances.add(logical_id)
        else:
            assert "Condition" not in statement
            documents.setdefault(logical_id, set()).update(statement["Resource"])
    assert documents == {
        "DispatchFunctionRole": {document_arn("RunContainerDocument")},
        "ReaperFunctionRole": {document_arn("StopContainerDocument")},
    }
    assert instances == set(documents)


def test_pass_role_is_scoped_to_a_service() -> None:
    for logical_id, statement in every_statement():
        if allows(statement, "iam:PassRole"):
            keys = {key for operator in statement.get("Condition", {}).values() for key in operator}
            assert "iam:PassedToService" in keys, f"{logical_id}: iam:PassRole without iam:PassedToService"
            assert "*" not in statement["Resource"]


def test_send_task_actions_only_where_the_token_is_held() -> None:
    """The host side and the container hold the token (worker instances); the reaper reads it
    from the job record to fail lost tasks. Nobody else may signal."""
    granted = {
        logical_id: actions
        for logical_id in POLICIES
        if (actions := {a for s in statements(STACK, logical_id) for a in s["Action"] if a in SEND_TASK})
    }
    assert granted == {"WorkerInstancePolicy": SEND_TASK, "ReaperFunctionRole": {"states:SendTaskFailure"}}


def test_other_states_actions_only_on_the_stacks_own_state_machines() -> None:
    names = "|".join(re.escape(name) for name in STATE_MACHINES)
    # A state machine, or its executions (Map Run children: NAME/LABEL:ID).
    scoped = re.compile(rf"arn:aws:states:{REGION}:{ACCOUNT}:(stateMachine:({names})|execution:({names})[:/]\*)")
    found = 0
    for logical_id, statement in every_statement():
        if any(action.startswith("states:") and action not in SEND_TASK for action in statement["Action"]):
            found += 1
            for resource in statement["Resource"]:
                assert scoped.fullmatch(resource), f"{logical_id}: {resource}"
    assert found, "no states: statement found: DescribeExecution (reaper) is expected"


def test_the_state_machine_invokes_only_the_dispatch_function() -> None:
    function = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{STACK.physical_name('DispatchFunction')}"
    invokes = [s for s in role_statements(STACK, "RunJobStateMachineRole") if allows(s, "lambda:InvokeFunction")]
    assert invokes
    for statement in invokes:
        assert statement["Action"] == ["lambda:InvokeFunction"]
        # The function and its versions/aliases (":*"), not every function whose name starts alike.
        assert set(statement["Resource"]) <= {function, function + ":*"}, statement["Resource"]


def test_the_instance_policy_reads_only_job_secrets_and_only_gets_job_records() -> None:
    granted = [s for s in role_statements(STACK, "WorkerInstanceRole") if s["Effect"] == "Allow"]
    actions = {action for statement in granted for action in statement["Action"]}
    assert actions, "the worker instance role grants nothing of the template's"
    for statement in granted:
        for action in statement["Action"]:
            if action.startswith(SECRET_READS):
                assert action in JOB_SECRETS, f"{action}: the host side reads secrets with {sorted(JOB_SECRETS)} only"
                assert statement["Resource"] == [JOB_SECRETS[action]], f"{action} beyond JobSecretsPrefix"
    assert {action for action in actions if action.startswith("dynamodb:")} == {"dynamodb:GetItem"}
    table = STACK.get_att("JobTable", "Arn")
    assert [s["Resource"] for s in granted if "dynamodb:GetItem" in s["Action"]] == [[table]]


@pytest.mark.parametrize("role", ROLES)
def test_aws_managed_policies_are_the_expected_ones(role: str) -> None:
    assert aws_managed_policies(STACK, role) == set(AWS_MANAGED.get(role, {}))
