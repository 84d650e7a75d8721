"""Dispatch one job: take a slot on a worker instance, record the job, send one SSM command.

Pure functions over clients passed in, so tests run them against moto and the handler only
wires module-scope clients (serverless-test-samples' layout).
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from dispatch.catalog import HOST_MARGIN_SECONDS, SSM_MAX_EXECUTION_TIMEOUT
from dispatch.errors import DeliveryFailed, InvalidRequest, NoCapacity
from dispatch.request import ValidRequest
from shared import slots
from shared.job_table import conditional_write, now_iso, set_status, token_hash

POOL_TAG = "run-job:pool"
# An instance's slots: how many jobs it runs at once (0 drains it). Without the tag: DEFAULT_SLOTS.
SLOTS_TAG = "run-job:slots"
MAX_SLOTS = 256
SLOTS_VALUE = re.compile(r"^[0-9]{1,3}$")
# DescribeInstanceInformation pages hold at most 50; DescribeTags filters take at most 200 values.
INSTANCE_PAGE_SIZE = 50
TAG_FILTER_VALUES = 200
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
    # The slot table, and the slots of an instance without the run-job:slots tag.
    slot_table: str = ""
    default_slots: int = 2


@dataclass(frozen=True)
class Clients:
    ssm: Any
    dynamodb: Any
    ec2: Any


@dataclass(frozen=True)
class Instance:
    """A worker instance as placement sees it: its slots and the jobs holding them."""

    instance_id: str
    slots: int
    jobs: frozenset[str]

    @property
    def load(self) -> float:
        return len(self.jobs) / self.slots if self.slots else 1.0


def online_instances(ssm: Any, pool_name: str) -> list[str]:
    """Instances of the pool whose SSM agent is online."""
    filters = [{"Key": f"tag:{POOL_TAG}", "Values": [pool_name]}, {"Key": "PingStatus", "Values": ["Online"]}]
    pages = ssm.get_paginator("describe_instance_information").paginate(
        Filters=filters, PaginationConfig={"PageSize": INSTANCE_PAGE_SIZE}
    )
    return sorted(info["InstanceId"] for page in pages for info in page["InstanceInformationList"])


def instance_slots(ec2: Any, instance_ids: list[str], default: int) -> dict[str, int]:
    """Each instance's run-job:slots tag (DescribeInstanceInformation does not return tags);
    the default where the tag is missing or not a number from 0 to MAX_SLOTS."""
    found = dict.fromkeys(instance_ids, default)
    for start in range(0, len(instance_ids), TAG_FILTER_VALUES):
        filters = [
            {"Name": "resource-id", "Values": instance_ids[start : start + TAG_FILTER_VALUES]},
            {"Name": "key", "Values": [SLOTS_TAG]},
        ]
        for page in ec2.get_paginator("describe_tags").paginate(Filters=filters):
            for tag in page["Tags"]:
                value = tag.get("Value", "")
                if SLOTS_VALUE.fullmatch(value) and int(value) <= MAX_SLOTS and tag["ResourceId"] in found:
                    found[tag["ResourceId"]] = int(value)
    return found


def pool(clients: Clients, settings: Settings) -> list[Instance]:
    """The pool's online instances with their slots and slot holders (unreadable ones left out)."""
    instance_ids = online_instances(clients.ssm, settings.pool_name)
    if not instance_ids:
        return []
    counts = instance_slots(clients.ec2, instance_ids, settings.default_slots)
    held = slots.holders(clients.dynamodb, settings.slot_table, instance_ids)
    return [Instance(i, counts[i], frozenset(held[i])) for i in instance_ids if i in held]


def _tie_breaker(job_id: str, instance_id: str) -> str:
    # Rendezvous hashing: equally loaded instances are tried in an order set by the job id, so
    # concurrent dispatches spread instead of all racing for the same instance.
    return hashlib.sha256(f"{job_id}|{instance_id}".encode()).hexdigest()


def placement_order(instances: list[Instance], job_id: str) -> list[Instance]:
    """Instances with a free slot, least loaded first, ties broken by the job id's hash; an
    instance the job holds a slot on already (a retried dispatch) comes first."""
    candidates = [i for i in instances if len(i.jobs) < i.slots or job_id in i.jobs]
    return sorted(candidates, key=lambda i: (job_id not in i.jobs, i.load, _tie_breaker(job_id, i.instance_id)))


def place(job_id: str, clients: Clients, settings: Settings) -> str:
    """Take a slot for the job on the least loaded instance that still has one; its id."""
    instances = pool(clients, settings)
    if not instances:
        raise NoCapacity("no online worker instance in the pool")
    for instance in placement_order(instances, job_id):
        # Another dispatch may have taken the last slot since the read: then the next instance.
        if slots.take(clients.dynamodb, settings.slot_table, instance.instance_id, job_id, instance.slots):
            return instance.instance_id
    total = sum(i.slots for i in instances)
    raise NoCapacity(f"all {total} slots of the pool's {len(instances)} online instances are taken")


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
        # References only: the host side reads the values when the job starts (docs/design.md).
        "secrets": {"M": {key: {"S": ref} for key, ref in job_type.secrets.items()}},
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


def _recorded(dynamodb: Any, settings: Settings, job_id: str) -> dict[str, Any] | None:
    item: dict[str, Any] | None = dynamodb.get_item(
        TableName=settings.job_table, Key={"jobId": {"S": job_id}}, ConsistentRead=True
    ).get("Item")
    return item


def _duplicate(job_id: str, existing: dict[str, Any]) -> Dispatched:
    return Dispatched(job_id, existing["instanceId"]["S"], existing.get("commandId", {}).get("S", ""), duplicate=True)


def _record(dynamodb: Any, settings: Settings, task: TaskContext, job: ValidRequest, instance_id: str) -> bool:
    """Write the job record unless the job id has one already; whether this call wrote it."""
    return conditional_write(
        lambda: dynamodb.put_item(
            TableName=settings.job_table,
            Item=job_item(task, job, instance_id, settings.output_bucket),
            ConditionExpression="attribute_not_exists(jobId)",
        )
    )


def dispatch(task: TaskContext, job: ValidRequest, settings: Settings, clients: Clients) -> Dispatched:
    """Take a slot, record the job, then send its one command. A replayed event takes and
    sends nothing new."""
    job_id, dynamodb = task.job_id, clients.dynamodb
    # A redelivered event finds its record: no slot is taken for it, no command sent.
    existing = _recorded(dynamodb, settings, job_id)
    if existing is not None:
        return _duplicate(job_id, existing)
    instance_id = place(job_id, clients, settings)
    try:
        recorded = _record(dynamodb, settings, task, job, instance_id)
    except Exception:
        slots.release(dynamodb, settings.slot_table, instance_id, job_id)
        raise
    if not recorded:
        # A concurrent delivery of the same event recorded it first and sends the command. Its
        # slot is the same set element when it chose the same instance: give back only ours.
        existing = _recorded(dynamodb, settings, job_id)
        if existing is None or existing["instanceId"]["S"] != instance_id:
            slots.release(dynamodb, settings.slot_table, instance_id, job_id)
        if existing is None:
            raise DeliveryFailed(f"the record of {job_id} vanished while it was dispatched")
        return _duplicate(job_id, existing)
    try:
        command = clients.ssm.send_command(
            InstanceIds=[instance_id],
            DocumentName=settings.document_name,
            # UpdateMethod NewVersion leaves $DEFAULT behind on stack updates.
            DocumentVersion="$LATEST",
            Parameters=command_parameters(job_id, job, settings),
            TimeoutSeconds=settings.delivery_timeout_seconds,
            Comment=f"run-job {job_id}",
        )["Command"]
    except ClientError as exc:
        # SSM answered with an error: no command exists, so nothing will end it but us.
        set_status(
            dynamodb, settings.job_table, job_id, "FAILED", {"failure": f"SendCommand: {exc.response['Error']['Code']}"}
        )
        slots.release(dynamodb, settings.slot_table, instance_id, job_id)
        raise DeliveryFailed(f"SendCommand to {instance_id} failed: {exc.response['Error']['Code']}") from None
    set_status(dynamodb, settings.job_table, job_id, "DISPATCHED", {"commandId": command["CommandId"]})
    return Dispatched(job_id, instance_id, command["CommandId"], duplicate=False)
