"""Create the template's resources in a moto backend, from template.yaml's own definitions.

Used by the local stack and by the unit tests, so both exercise exactly what the template
declares (table keys and indexes, catalog entries, document content, ASL, function settings).
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import yaml

from local_stack.template import ROOT, Stack

POOL_TAG = "run-job:pool"
# Settings that differ on one machine: no ECR to pull from, no bridge network, no CloudWatch.
LOCAL_FUNCTION_ENVIRONMENT = {
    "PULL_POLICY": "missing",
    "CONTAINER_NETWORK": "host",
    "LOG_DRIVER": "json-file",
    "CATALOG_MAX_AGE_SECONDS": "1",  # a swapped job type takes effect at once
    "DELIVERY_TIMEOUT_SECONDS": "30",  # SSM's minimum: a hung local agent fails fast
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_DISABLED": "true",
}


def create_table(dynamodb: Any, stack: Stack, logical_id: str) -> str:
    props = stack.properties(logical_id)
    name = stack.physical_name(logical_id)
    indexes = {"GlobalSecondaryIndexes": props["GlobalSecondaryIndexes"]} if "GlobalSecondaryIndexes" in props else {}
    dynamodb.create_table(
        TableName=name,
        BillingMode=props["BillingMode"],
        AttributeDefinitions=props["AttributeDefinitions"],
        KeySchema=props["KeySchema"],
        **indexes,
    )
    if "TimeToLiveSpecification" in props:
        dynamodb.update_time_to_live(TableName=name, TimeToLiveSpecification=props["TimeToLiveSpecification"])
    return name


def create_job_table(dynamodb: Any, stack: Stack) -> str:
    return create_table(dynamodb, stack, "JobTable")


def create_tables(dynamodb: Any, stack: Stack) -> dict[str, str]:
    """Every DynamoDB table of the template (the job table, the slot table), logical id → name."""
    return {
        logical_id: create_table(dynamodb, stack, logical_id)
        for logical_id, resource in stack.resources.items()
        if resource["Type"] == "AWS::DynamoDB::Table"
    }


def create_bucket(s3: Any, stack: Stack, logical_id: str = "OutputBucket") -> str:
    name = stack.physical_name(logical_id)
    s3.create_bucket(Bucket=name)
    return name


def put_catalog(ssm: Any, stack: Stack) -> list[str]:
    """Seed every SSM parameter the template declares (the job type catalog)."""
    names = []
    for logical_id, resource in stack.resources.items():
        if resource["Type"] == "AWS::SSM::Parameter":
            props = stack.properties(logical_id)
            ssm.put_parameter(Name=props["Name"], Type=props["Type"], Value=props["Value"], Overwrite=True)
            names.append(props["Name"])
    return names


def document_content(stack: Stack, logical_id: str) -> dict[str, Any]:
    content: dict[str, Any] = stack.properties(logical_id)["Content"]
    return content


def create_documents(ssm: Any, stack: Stack) -> dict[str, str]:
    """Every SSM document of the template, by logical id → document name."""
    created = {}
    for logical_id, resource in stack.resources.items():
        if resource["Type"] == "AWS::SSM::Document":
            name = stack.physical_name(logical_id)
            props = stack.properties(logical_id)
            ssm.create_document(
                Name=name,
                Content=yaml.safe_dump(props["Content"], sort_keys=False),
                DocumentType=props["DocumentType"],
                DocumentFormat="YAML",
            )
            created[logical_id] = name
    return created


def function_environment(stack: Stack, logical_id: str) -> dict[str, str]:
    """Globals plus the function's own variables, resolved, with the local overrides."""
    variables: dict[str, str] = {}
    globals_env = stack.template.get("Globals", {}).get("Function", {}).get("Environment", {})
    variables.update(stack.resolve(globals_env.get("Variables", {})))
    variables.update(stack.properties(logical_id).get("Environment", {}).get("Variables", {}))
    variables.update(LOCAL_FUNCTION_ENVIRONMENT)
    return {key: str(value) for key, value in variables.items()}


def function_code_dir(stack: Stack, logical_id: str) -> Path:
    return ROOT / str(stack.properties(logical_id)["CodeUri"])


def create_function(lambda_client: Any, iam: Any, stack: Stack, logical_id: str) -> str:
    """Register the function with moto's Lambda (its code runs in local_stack.lambda_runtime)."""
    props = stack.properties(logical_id)
    globals_fn = stack.template.get("Globals", {}).get("Function", {})
    role = iam.create_role(
        RoleName=f"{stack.name}-{logical_id}Role",
        AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
    )["Role"]["Arn"]
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("README", "code runs from the source tree: local_stack/lambda_runtime.py")
    name = stack.physical_name(logical_id)
    lambda_client.create_function(
        FunctionName=name,
        Runtime=props.get("Runtime", globals_fn["Runtime"]),
        Role=role,
        Handler=props["Handler"],
        Code={"ZipFile": archive.getvalue()},
        Timeout=props.get("Timeout", globals_fn.get("Timeout", 3)),
        Environment={"Variables": function_environment(stack, logical_id)},
    )
    return stack.get_att(logical_id, "Arn")


def state_machine_definition(stack: Stack, logical_id: str) -> str:
    """The ASL file with the template's DefinitionSubstitutions applied, as SAM does."""
    props = stack.properties(logical_id)
    text = (ROOT / str(props["DefinitionUri"])).read_text(encoding="utf-8")
    for key, value in props.get("DefinitionSubstitutions", {}).items():
        text = text.replace("${" + key + "}", str(value))
    return text


def create_state_machine(sfn: Any, iam: Any, stack: Stack, logical_id: str) -> str:
    role = iam.create_role(
        RoleName=f"{stack.name}-{logical_id}Role",
        AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
    )["Role"]["Arn"]
    arn: str = sfn.create_state_machine(
        name=stack.physical_name(logical_id),
        definition=state_machine_definition(stack, logical_id),
        roleArn=role,
        type=stack.properties(logical_id).get("Type", "STANDARD"),
    )["stateMachineArn"]
    return arn


def create_instances(ec2: Any, stack: Stack, count: int, slots: int | None = None) -> list[str]:
    """Worker instances carrying the pool tag (EC2 is emulated; the agent runs on this machine)."""
    tags = [{"Key": POOL_TAG, "Value": stack.parameter("WorkerPoolName")}]
    if slots is not None:
        tags.append({"Key": "run-job:slots", "Value": str(slots)})
    reservation = ec2.run_instances(
        ImageId="ami-12c6146b",
        MinCount=count,
        MaxCount=count,
        TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
    )
    return [instance["InstanceId"] for instance in reservation["Instances"]]
