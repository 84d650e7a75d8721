"""Dispatch one job: pick a worker instance, record the job, send one SSM command.

Pure functions over clients passed in, so tests run them against moto and the handler only
wires module-scope clients (serverless-test-samples' layout).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from dispatch.catalog import HOST_MARGIN_SECONDS, SSM_MAX_EXECUTION_TIMEOUT
from dispatch.errors import DeliveryFailed, InvalidRequest, NoCapacity
from dispatch.request import ValidRequest
from shared.job_table import now_iso, set_status, token_hash

POOL_TAG = "run-job:pool"
# Finished jobs stay readable this long after their timeout, then DynamoDB's TTL removes them.
RETENTION_SECONDS = 30 * 24 * 3600
MAX_TOKEN_CHARS = 2048


@dataclass(frozen=True)
class TaskContext:
    """What the state machine passes besides the request (statemachine/run_job.asl.json)."""

    token: str
    execution_arn: str
    state_name: str
    state_entered_time: str
    retry_count: int

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> TaskContext:
        token = event.get("taskToken")
        if not isinstance(token, str) or not 1 <= len(token) <= MAX_TOKEN_CHARS:
            raise InvalidRequest("taskToken: missing (invoke the dispatch function from the state machine)")
        fields: dict[str, str] = {}
        for key in ("executionArn", "stateName", "stateEnteredTime"):
            value = event.get(key)
            if not isinstance(value, str) or not value:
                raise InvalidRequest(f"{key}: missing (invoke the dispatch function from the state machine)")
            fields[key] = value
        retry_count = event.get("retryCount", 0)
        if isinstance(retry_count, bool) or not isinstance(retry_count, int) or retry_count < 0:
            raise InvalidRequest("retryCount: must be a non-negative integer")
        return cls(token, fields["executionArn"], fields["stateName"], fields["stateEnteredTime"], retry_count)

    @property
    def job_id(self) -> str:
        """Keyed on the Task attempt, never on the token (docs/design.md, "Job id")."""
        key = f"{self.execution_arn}|{self.state_name}|{self.state_entered_time}|{self.retry_count}"
        return "job-" + hashlib.sha256(key.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Settings:
    """Non-secret settings from the function's environment."""

    job_table: str
    document_name: str
    pool_name: str
    region: str
    log_driver: str
    log_group: str
    pull_policy: str
    network: str
    # How long SSM may wait for the instance to pick the command up (then DeliveryTimedOut).
    delivery_timeout_seconds: int = 120
    # Where the callback wrapper writes outputs over Step Functions' limit ("" = nowhere).
    output_bucket: str = ""


def online_instances(ssm: Any, pool_name: str) -> list[str]:
    """Instances of the pool whose SSM agent is online."""
    filters = [{"Key": f"tag:{POOL_TAG}", "Values": [pool_name]}, {"Key": "PingStatus", "Values": ["Online"]}]
    found: list[str] = []
    for page in ssm.get_paginator("describe_instance_information").paginate(Filters=filters):
        found += [info["InstanceId"] for info in page["InstanceInformationList"]]
    return sorted(found)


def pick_instance(instances: list[str], job_id: str) -> str:
    """Spread jobs over the pool; the same job id always lands on the same instance."""
    if not instances:
        raise NoCapacity("no online worker instance in the pool")
    return instances[int(job_id.removeprefix("job-"), 16) % len(instances)]


def job_item(task: TaskContext, job: ValidRequest, instance_id: str, output_bucket: str = "") -> dict[str, Any]:
    """The job record (docs/design.md, "Job record") in DynamoDB's wire format."""
    job_type = job.job_type
    created = now_iso()
    return {
        "jobId": {"S": task.job_id},
        "executionArn": {"S": task.execution_arn},
        "stateName": {"S": task.state_name},
        "stateEnteredTime": {"S": task.state_entered_time},
        "retryCount": {"N": str(task.retry_count)},
        "jobType": {"S": job_type.name},
        "image": {"S": job.image},
        "command": {"L": [{"S": arg} for arg in job_type.command]},
        "input": {"S": job.input_json},
        "inputSha256": {"S": hashlib.sha256(job.input_json.encode("utf-8")).hexdigest()},
        "token": {"S": task.token},
        "tokenHash": {"S": token_hash(task.token)},
        "cpu": {"N": repr(job_type.cpu)},
        "memoryMiB": {"N": str(job_type.memory_mib)},
        "pidsLimit": {"N": str(job_type.pids_limit)},
        "readOnlyRootFs": {"BOOL": job_type.read_only_root_fs},
        "env": {"M": {key: {"S": value} for key, value in job_environment(job, output_bucket).items()}},
        "timeoutSeconds": {"N": str(job.timeout_seconds)},
        "heartbeatSeconds": {"N": str(job.heartbeat_seconds)},
        "stopGraceSeconds": {"N": str(job_type.stop_grace_seconds)},
        "instanceId": {"S": instance_id},
        "status": {"S": "PENDING"},
        "createdAt": {"S": created},
        "updatedAt": {"S": created},
        "expiresAt": {"N": str(int(time.time()) + job.timeout_seconds + RETENTION_SECONDS)},
    }


def job_environment(job: ValidRequest, output_bucket: str) -> dict[str, str]:
    """The job type's environment plus the settings the callback wrapper needs from the stack."""
    return {**job.job_type.env, **({"OUTPUT_BUCKET": output_bucket} if output_bucket else {})}


def command_parameters(job_id: str, job: ValidRequest, settings: Settings) -> dict[str, list[str]]:
    """The run-container document's parameters: the job id and non-secret settings only."""
    execution_timeout = min(job.timeout_seconds + HOST_MARGIN_SECONDS, SSM_MAX_EXECUTION_TIMEOUT)
    return {
        "JobId": [job_id],
        "JobTable": [settings.job_table],
        "Region": [settings.region],
        "PullPolicy": [settings.pull_policy],
        "Network": [settings.network],
        "LogDriver": [settings.log_driver],
        "LogGroup": [settings.log_group],
        "executionTimeout": [str(execution_timeout)],
    }


@dataclass(frozen=True)
class Dispatched:
    job_id: str
    instance_id: str
    command_id: str
    duplicate: bool


def dispatch(task: TaskContext, job: ValidRequest, settings: Settings, ssm: Any, dynamodb: Any) -> Dispatched:
    """Record the job, then send its one command. A replayed event sends nothing new."""
    job_id = task.job_id
    instance_id = pick_instance(online_instances(ssm, settings.pool_name), job_id)
    try:
        dynamodb.put_item(
            TableName=settings.job_table,
            Item=job_item(task, job, instance_id, settings.output_bucket),
            ConditionExpression="attribute_not_exists(jobId)",
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
            raise
        # The same Task attempt was dispatched already (a redelivered or concurrent event):
        # whoever recorded it first sends the command.
        existing = dynamodb.get_item(TableName=settings.job_table, Key={"jobId": {"S": job_id}}, ConsistentRead=True)[
            "Item"
        ]
        return Dispatched(
            job_id, existing["instanceId"]["S"], existing.get("commandId", {}).get("S", ""), duplicate=True
        )
    try:
        command = ssm.send_command(
            InstanceIds=[instance_id],
            DocumentName=settings.document_name,
            # UpdateMethod NewVersion leaves $DEFAULT behind on stack updates.
            DocumentVersion="$LATEST",
            Parameters=command_parameters(job_id, job, settings),
            TimeoutSeconds=settings.delivery_timeout_seconds,
            Comment=f"run-job {job_id}",
        )["Command"]
    except ClientError as exc:
        set_status(
            dynamodb, settings.job_table, job_id, "FAILED", {"failure": f"SendCommand: {exc.response['Error']['Code']}"}
        )
        raise DeliveryFailed(f"SendCommand to {instance_id} failed: {exc.response['Error']['Code']}") from None
    set_status(dynamodb, settings.job_table, job_id, "DISPATCHED", {"commandId": command["CommandId"]})
    return Dispatched(job_id, instance_id, command["CommandId"], duplicate=False)
