"""What the reaper does for each event, as pure functions over clients passed in.

- An execution ended: its jobs' records follow (SUCCEEDED, FAILED, CANCELLED); when it was
  stopped or timed out, the job's SSM command is cancelled and its container stopped.
- An SSM command of the run-container document ended without the job signalling (failed,
  undeliverable, timed out, cancelled): the still-open task fails at once with
  Job.DeliveryFailed or Job.HostLost instead of waiting for its heartbeat timeout.
- A worker instance is stopping, terminated or about to be interrupted: every open job on it
  fails with Job.HostLost, which the state machine retries on another instance.
- Slots (shared/slots.py) are given back when the job's host side is done: its command ended,
  whatever the status (the host side removes the container before it exits), or its instance
  went away. Every way a job ends leads there: a stopped execution's command is cancelled and
  its container stopped, which ends the command.
- The scheduled sweep re-derives all of the above for open jobs and held slots, in case an
  event was lost or a dispatch died between taking a slot and sending the command.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from shared import slots
from shared.job_table import OPEN_STATUSES, set_status

# SendTask* answers that mean the task was already closed: nothing left to do.
CLOSED_TASK_ERRORS = ("TaskTimedOut", "TaskDoesNotExist", "InvalidToken")
EXECUTION_TO_JOB_STATUS = {
    "SUCCEEDED": "SUCCEEDED",
    "FAILED": "FAILED",
    "TIMED_OUT": "CANCELLED",
    "ABORTED": "CANCELLED",
}
# Command invocation statuses that end a job without its signal, and the error the task gets.
COMMAND_FAILURES = {
    "Failed": "Job.DeliveryFailed",
    "Undeliverable": "Job.DeliveryFailed",
    "DeliveryTimedOut": "Job.DeliveryFailed",
    "TimedOut": "Job.HostLost",
    "Cancelled": "Job.HostLost",
    "Terminated": "Job.HostLost",
}
# Command invocation statuses of a host side that may still hold its instance's slot.
COMMAND_RUNNING = ("Pending", "InProgress", "Delayed", "Cancelling")
HOST_LOST_STATES = ("stopping", "stopped", "shutting-down", "terminated")
# A dispatch takes seconds; a job still PENDING without a command after this was abandoned, and
# so is a slot taken this long ago for a job that has no record.
PENDING_GRACE_SECONDS = 300


@dataclass(frozen=True)
class Settings:
    job_table: str
    run_document: str
    stop_document: str
    slot_table: str


def _job(dynamodb: Any, settings: Settings, job_id: str) -> dict[str, Any] | None:
    item: dict[str, Any] | None = dynamodb.get_item(
        TableName=settings.job_table, Key={"jobId": {"S": job_id}}, ConsistentRead=True
    ).get("Item")
    return item


def fail_task(sfn: Any, job: dict[str, Any], error: str, cause: dict[str, Any]) -> bool:
    """SendTaskFailure for an open job; False when the task had closed already."""
    try:
        sfn.send_task_failure(taskToken=job["token"]["S"], error=error, cause=json.dumps(cause)[:32_768])
    except ClientError as exc:
        if exc.response["Error"]["Code"] in CLOSED_TASK_ERRORS:
            return False
        raise
    return True


def stop_container(ssm: Any, settings: Settings, job: dict[str, Any], cancel_command: bool) -> None:
    """Cancel the job's host side (its trap stops the container) and send the stop document,
    which also covers a host side that already exited while the container lives on."""
    instance_id = job["instanceId"]["S"]
    if cancel_command and "commandId" in job:
        try:
            ssm.cancel_command(CommandId=job["commandId"]["S"], InstanceIds=[instance_id])
        except ClientError as exc:  # finished commands cannot be cancelled: nothing to do
            if exc.response["Error"]["Code"] not in ("InvalidCommandId", "InvalidInstanceId", "DuplicateInstanceId"):
                raise
    ssm.send_command(
        InstanceIds=[instance_id],
        DocumentName=settings.stop_document,
        DocumentVersion="$LATEST",
        Parameters={"JobId": [job["jobId"]["S"]], "GraceSeconds": [job.get("stopGraceSeconds", {}).get("N", "30")]},
        TimeoutSeconds=60,
        Comment=f"run-job stop {job['jobId']['S']}",
    )


def execution_ended(
    dynamodb: Any, ssm: Any, settings: Settings, execution_arn: str, status: str
) -> list[tuple[str, str]]:
    """Records follow the execution; stopped or timed-out executions stop their containers."""
    final = EXECUTION_TO_JOB_STATUS.get(status)
    if final is None:
        return []
    changed = []
    for key in _job_keys_of_execution(dynamodb, settings, execution_arn):
        job = _job(dynamodb, settings, key)
        if job is None or job["status"]["S"] not in OPEN_STATUSES:
            continue
        if set_status(dynamodb, settings.job_table, key, final, {"reason": f"execution {status}"}):
            changed.append((key, final))
        if status != "SUCCEEDED" and "commandId" in job:
            stop_container(ssm, settings, job, cancel_command=status in ("ABORTED", "TIMED_OUT"))
    return changed


def _job_keys_of_execution(dynamodb: Any, settings: Settings, execution_arn: str) -> list[str]:
    pages = dynamodb.get_paginator("query").paginate(
        TableName=settings.job_table,
        IndexName="byExecution",
        KeyConditionExpression="executionArn = :arn",
        ExpressionAttributeValues={":arn": {"S": execution_arn}},
    )
    return [item["jobId"]["S"] for page in pages for item in page["Items"]]


def command_ended(
    dynamodb: Any, sfn: Any, ssm: Any, settings: Settings, command_id: str, instance_id: str, status: str
) -> str | None:
    """A run-container command ended: its job's slot is free again, and if it ended badly the
    job's task fails now. Returns the error sent."""
    error = COMMAND_FAILURES.get(status)
    if error is None and status != "Success":
        return None
    commands = ssm.list_commands(CommandId=command_id)["Commands"]
    if not commands or commands[0]["DocumentName"] != settings.run_document:
        return None
    job_id = commands[0]["Parameters"]["JobId"][0]
    slots.release(dynamodb, settings.slot_table, instance_id, job_id)
    if error is None:
        return None
    job = _job(dynamodb, settings, job_id)
    if job is None or job["status"]["S"] not in OPEN_STATUSES:
        return None
    # Claim the job first: of two events about it (a lost host also ends its command), one signals.
    if not set_status(dynamodb, settings.job_table, job_id, "FAILED", {"reason": f"command {status}"}):
        return None
    cause = {"jobId": job_id, "instanceId": instance_id, "commandId": command_id, "commandStatus": status}
    return error if fail_task(sfn, job, error, cause) else None


def host_lost(dynamodb: Any, sfn: Any, settings: Settings, instance_id: str, why: str, gone: bool = True) -> list[str]:
    """Every open job on the instance fails with Job.HostLost (retried on another instance).
    When the instance is `gone` (not merely warned of an interruption), its slots are freed:
    its containers went with it."""
    failed = []
    for job in open_jobs(dynamodb, settings, instance_id=instance_id):
        job_id = job["jobId"]["S"]
        if not set_status(dynamodb, settings.job_table, job_id, "FAILED", {"reason": why}):
            continue  # another event claimed it first
        if fail_task(sfn, job, "Job.HostLost", {"jobId": job_id, "instanceId": instance_id, "reason": why}):
            failed.append(job_id)
    if gone:
        slots.release_instance(dynamodb, settings.slot_table, instance_id)
    return failed


def open_jobs(dynamodb: Any, settings: Settings, instance_id: str | None = None) -> list[dict[str, Any]]:
    """Jobs still PENDING or DISPATCHED: on one instance (its index), or all (a scan, for the sweep)."""
    values: dict[str, Any] = {":pending": {"S": "PENDING"}, ":dispatched": {"S": "DISPATCHED"}}
    selection: dict[str, Any] = {
        "TableName": settings.job_table,
        "FilterExpression": "#s IN (:pending, :dispatched)",
        "ExpressionAttributeNames": {"#s": "status"},
        "ExpressionAttributeValues": values,
    }
    if instance_id is None:
        pages = dynamodb.get_paginator("scan").paginate(**selection, ConsistentRead=True)
        return [item for page in pages for item in page["Items"]]
    values[":instance"] = {"S": instance_id}
    pages = dynamodb.get_paginator("query").paginate(
        **selection, IndexName="byInstance", KeyConditionExpression="instanceId = :instance"
    )
    jobs = (_job(dynamodb, settings, item["jobId"]["S"]) for page in pages for item in page["Items"])
    return [job for job in jobs if job is not None and job["status"]["S"] in OPEN_STATUSES]


def stale_pending(dynamodb: Any, sfn: Any, settings: Settings, job: dict[str, Any]) -> bool:
    """A job recorded but never sent (the dispatch function died in between; a redelivered
    event sends nothing for a recorded job): fail it once it is clearly abandoned."""
    created = datetime.fromisoformat(job["createdAt"]["S"])
    if datetime.now(UTC) - created < timedelta(seconds=PENDING_GRACE_SECONDS):
        return False
    job_id = job["jobId"]["S"]
    if not set_status(dynamodb, settings.job_table, job_id, "FAILED", {"reason": "never sent"}):
        return False
    return fail_task(sfn, job, "Job.DeliveryFailed", {"jobId": job_id, "reason": "the command was never sent"})


def _older_than(timestamp: str, seconds: int) -> bool:
    """Whether an ISO 8601 time is more than `seconds` ago; an unknown time counts as old."""
    try:
        then = datetime.fromisoformat(timestamp)
    except ValueError:
        return True
    return datetime.now(UTC) - then > timedelta(seconds=seconds)


def slot_abandoned(dynamodb: Any, ssm: Any, settings: Settings, instance_id: str, job_id: str, taken_at: str) -> bool:
    """Whether a held slot belongs to no running host side any more."""
    job = _job(dynamodb, settings, job_id)
    if job is None or job["instanceId"]["S"] != instance_id:
        # No record (a dispatch recording it now, or one that died), or the record of a
        # concurrent duplicate that won on another instance.
        return _older_than(taken_at, PENDING_GRACE_SECONDS)
    if job["status"]["S"] in OPEN_STATUSES:
        return False  # ending open jobs is the sweep's other work; their command's end frees the slot
    if "commandId" not in job:
        return True
    invocations = ssm.list_command_invocations(CommandId=job["commandId"]["S"], InstanceId=instance_id)[
        "CommandInvocations"
    ]
    return not invocations or invocations[0]["Status"] not in COMMAND_RUNNING


def reconcile_slots(dynamodb: Any, ssm: Any, settings: Settings) -> int:
    """Free the slots whose host side is done (a lost command-ended event, a dead dispatch)."""
    released = 0
    for instance_id, holders in slots.all_holders(dynamodb, settings.slot_table).items():
        for job_id, taken_at in holders.items():
            if slot_abandoned(dynamodb, ssm, settings, instance_id, job_id, taken_at):
                released += slots.release(dynamodb, settings.slot_table, instance_id, job_id)
    return released


def sweep(dynamodb: Any, sfn: Any, ssm: Any, settings: Settings) -> dict[str, int]:
    """Reconcile open jobs with their executions and commands, and held slots with their jobs
    (lost events, missed rules, dead dispatches)."""
    counts = {"open": 0, "executionEnded": 0, "commandEnded": 0, "stalePending": 0}
    for job in open_jobs(dynamodb, settings):
        counts["open"] += 1
        execution_arn = job["executionArn"]["S"]
        try:
            status = sfn.describe_execution(executionArn=execution_arn)["status"]
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ExecutionDoesNotExist":
                raise
            status = "ABORTED"
        if status != "RUNNING":
            counts["executionEnded"] += bool(execution_ended(dynamodb, ssm, settings, execution_arn, status))
            continue
        if "commandId" not in job:
            counts["stalePending"] += stale_pending(dynamodb, sfn, settings, job)
            continue
        invocations = ssm.list_command_invocations(CommandId=job["commandId"]["S"], InstanceId=job["instanceId"]["S"])[
            "CommandInvocations"
        ]
        if invocations and invocations[0]["Status"] in COMMAND_FAILURES:
            ended = command_ended(
                dynamodb, sfn, ssm, settings, job["commandId"]["S"], job["instanceId"]["S"], invocations[0]["Status"]
            )
            counts["commandEnded"] += ended is not None
    counts["slotsReleased"] = reconcile_slots(dynamodb, ssm, settings)
    return counts
