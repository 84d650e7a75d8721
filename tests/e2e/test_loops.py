"""Nothing hangs, nothing is orphaned: stops reach the container, lost commands and lost
hosts fail the task at once (and the state machine retries elsewhere)."""

from __future__ import annotations

import time
from datetime import datetime

from local_stack.client import LocalStackClient, wait_until
from tests.e2e.support import containers, job_status, running_job


def set_hung(stack: LocalStackClient, hung: bool) -> None:
    """Tag every pool instance so the local agent takes commands but never runs them."""
    ec2, instances = stack.client("ec2"), stack.state["instance_ids"]
    if hung:
        ec2.create_tags(Resources=instances, Tags=[{"Key": "run-job:local-agent", "Value": "hung"}])
    else:
        ec2.delete_tags(Resources=instances, Tags=[{"Key": "run-job:local-agent"}])


def test_stop_execution_stops_the_container_and_cancels_the_job(stack: LocalStackClient) -> None:
    arn = stack.start({"jobType": "checksum", "input": {"sleepSeconds": 120}})
    job = running_job(stack, arn)
    job_id = job["jobId"]["S"]
    stopped_at = time.monotonic()
    stack.client("stepfunctions").stop_execution(executionArn=arn, error="Job.Cancelled", cause="test")
    assert wait_until(lambda: not containers(job_id), 30), "the container outlived its stopped execution"
    print(f"StopExecution -> container gone: {time.monotonic() - stopped_at:.2f} s")
    assert wait_until(lambda: job_status(stack, job_id) == "CANCELLED", 10)
    assert stack.describe(arn)["status"] == "ABORTED"


def test_undeliverable_command_fails_the_task_at_once_and_is_retried(stack: LocalStackClient) -> None:
    set_hung(stack, True)
    try:
        arn = stack.start({"jobType": "checksum", "input": {}, "heartbeatSeconds": 900})
        assert wait_until(lambda: bool(stack.job_ids(arn)), 30)
        first = stack.job(stack.job_ids(arn)[0])
        # The delivery timeout is 30 s on the local stack; the heartbeat timeout 900 s.
        assert wait_until(lambda: job_status(stack, first["jobId"]["S"]) == "FAILED", 60)
    finally:
        set_hung(stack, False)
    created = datetime.fromisoformat(first["createdAt"]["S"])
    failed = datetime.fromisoformat(stack.job(first["jobId"]["S"])["updatedAt"]["S"])
    print(f"undeliverable command -> task failed: {(failed - created).total_seconds():.1f} s after dispatch")
    assert (failed - created).total_seconds() < 45
    outcome = stack.wait(arn, timeout=120)
    assert outcome.status == "SUCCEEDED", outcome
    errors = [e["taskFailedEventDetails"]["error"] for e in stack.history(arn) if e["type"] == "TaskFailed"]
    assert errors, "no attempt failed"
    assert set(errors) == {"Job.DeliveryFailed"}, errors


def test_lost_instance_fails_its_jobs_and_the_retry_runs_elsewhere(stack: LocalStackClient) -> None:
    ec2 = stack.client("ec2")
    arn = stack.start({"jobType": "checksum", "input": {"sleepSeconds": 10}})
    job = running_job(stack, arn)
    lost = job["instanceId"]["S"]
    ec2.stop_instances(InstanceIds=[lost])
    try:
        outcome = stack.wait(arn, timeout=120)
    finally:
        ec2.start_instances(InstanceIds=[lost])
    assert outcome.status == "SUCCEEDED", outcome
    errors = [e["taskFailedEventDetails"]["error"] for e in stack.history(arn) if e["type"] == "TaskFailed"]
    assert errors == ["Job.HostLost"], errors
    instances = [stack.job(job_id)["instanceId"]["S"] for job_id in stack.job_ids(arn)]
    assert len(instances) == 2
    assert set(instances) - {lost}, "the retry ran on the lost instance again"
    assert job_status(stack, job["jobId"]["S"]) == "FAILED"
    assert wait_until(lambda: not containers(job["jobId"]["S"]), 30), "the lost host's container lives on"
