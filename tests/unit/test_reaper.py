"""The reaper gives slots back whichever way a job ends: its command ended (any status), its
instance went away, or the sweep found the slot abandoned (a lost event, a dead dispatch)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from moto.ssm.models import ssm_backends

from reaper import reap
from shared import slots

from .support import event_for, job_request

WORD_COUNT = job_request("word-count.json")
LONG_AGO = (datetime.now(UTC) - timedelta(seconds=reap.PENDING_GRACE_SECONDS + 60)).isoformat()


def command_event(job: dict[str, Any], status: str, document: str | None = None) -> dict[str, Any]:
    return {
        "detail-type": "EC2 Command Invocation Status-change Notification",
        "source": "aws.ssm",
        "detail": {"command-id": job["commandId"], "instance-id": job["instanceId"], "status": status},
    }


def set_invocation_status(deployment: Any, command_id: str, status: str) -> None:
    """What the SSM agent reports as the host side runs (moto's commands never run)."""
    command = ssm_backends[deployment.stack.account][deployment.stack.region].get_command_by_id(command_id)
    for invocation in command.invocations:
        invocation.update(Status=status, StatusDetails=status)


def job_status(deployment: Any, job_id: str) -> str:
    item = deployment.dynamodb.get_item(TableName=deployment.job_table, Key={"jobId": {"S": job_id}})["Item"]
    return str(item["status"]["S"])


def backdate_slot(deployment: Any, instance_id: str, job_id: str) -> None:
    deployment.dynamodb.update_item(
        TableName=deployment.slot_table,
        Key={"instanceId": {"S": instance_id}},
        UpdateExpression="SET #at = :then",
        ExpressionAttributeNames={"#at": slots.TAKEN_PREFIX + job_id},
        ExpressionAttributeValues={":then": {"S": LONG_AGO}},
    )


@pytest.mark.parametrize("status", ["Success", "Failed", "TimedOut", "Cancelled", "Undeliverable", "Terminated"])
def test_a_finished_command_frees_its_jobs_slot(status, invoke, reaper_app, slot_holders):
    job = invoke(event_for(WORD_COUNT))
    other = invoke(event_for(WORD_COUNT))
    assert job["jobId"] in slot_holders()[job["instanceId"]]

    reaper_app.route(command_event(job, status))

    held = set().union(*slot_holders().values())
    assert held == {other["jobId"]}


def test_a_successful_command_fails_no_task(deployment, invoke, reaper_app, failed_tasks):
    job = invoke(event_for(WORD_COUNT))
    assert reaper_app.route(command_event(job, "Success")) == {"failedWith": None}
    assert failed_tasks == []
    assert job_status(deployment, job["jobId"]) == "DISPATCHED"  # the execution's end decides


def test_a_failed_command_frees_the_slot_and_fails_the_task(deployment, invoke, reaper_app, failed_tasks, slot_holders):
    job = invoke(event_for(WORD_COUNT))
    reaper_app.route(command_event(job, "Undeliverable"))
    assert [sent["error"] for sent in failed_tasks] == ["Job.DeliveryFailed"]
    assert job_status(deployment, job["jobId"]) == "FAILED"
    assert not any(slot_holders().values())


@pytest.mark.parametrize("status", ["Pending", "InProgress", "Delayed"])
def test_a_command_still_running_keeps_its_slot(status, invoke, reaper_app, slot_holders):
    job = invoke(event_for(WORD_COUNT))
    reaper_app.route(command_event(job, status))
    assert slot_holders()[job["instanceId"]] == {job["jobId"]}


def test_a_stop_container_command_frees_nothing(deployment, invoke, reaper_app, slot_holders):
    job = invoke(event_for(WORD_COUNT))
    stop = deployment.ssm.send_command(
        InstanceIds=[job["instanceId"]],
        DocumentName=deployment.documents["StopContainerDocument"],
        Parameters={"JobId": [job["jobId"]]},
    )["Command"]
    reaper_app.route(command_event({**job, "commandId": stop["CommandId"]}, "Success"))
    assert slot_holders()[job["instanceId"]] == {job["jobId"]}


@pytest.mark.parametrize("state", ["stopping", "stopped", "shutting-down", "terminated"])
def test_a_lost_instance_frees_all_its_slots(state, deployment, invoke, reaper_app, failed_tasks, slot_holders):
    jobs = [invoke(event_for(WORD_COUNT)) for _ in range(2 * len(deployment.instance_ids))]
    lost = jobs[0]["instanceId"]
    on_lost = {job["jobId"] for job in jobs if job["instanceId"] == lost}
    assert len(on_lost) == 2

    reaper_app.route(
        {"detail-type": "EC2 Instance State-change Notification", "detail": {"instance-id": lost, "state": state}}
    )

    assert {sent["error"] for sent in failed_tasks} == {"Job.HostLost"}
    assert slot_holders().get(lost, set()) == set()
    assert set().union(*slot_holders().values()) == {job["jobId"] for job in jobs} - on_lost


def test_a_spot_warning_fails_the_jobs_but_keeps_the_slots(deployment, invoke, reaper_app, failed_tasks, slot_holders):
    """Two minutes' notice: the jobs retry elsewhere now, and nothing new lands on the instance."""
    job = invoke(event_for(WORD_COUNT))
    reaper_app.route(
        {"detail-type": "EC2 Spot Instance Interruption Warning", "detail": {"instance-id": job["instanceId"]}}
    )
    assert [sent["error"] for sent in failed_tasks] == ["Job.HostLost"]
    assert slot_holders()[job["instanceId"]] == {job["jobId"]}


# --- the sweep --------------------------------------------------------------------------------


def reconcile(reaper_app: Any) -> int:
    released: int = reap.reconcile_slots(reaper_app.dynamodb, reaper_app.ssm, reaper_app.settings)
    return released


def test_the_sweep_frees_a_slot_whose_job_ended_and_whose_command_finished(
    deployment, invoke, reaper_app, slot_holders
):
    """The command-ended event was lost: the record and the command's status say it is over."""
    job = invoke(event_for(WORD_COUNT))
    reap.set_status(deployment.dynamodb, deployment.job_table, job["jobId"], "SUCCEEDED")
    set_invocation_status(deployment, job["commandId"], "InProgress")
    assert reconcile(reaper_app) == 0  # still running on the host (e.g. a stop's grace)
    set_invocation_status(deployment, job["commandId"], "Success")
    assert reconcile(reaper_app) == 1
    assert not any(slot_holders().values())


def test_the_sweep_keeps_the_slots_of_open_jobs(deployment, invoke, reaper_app, slot_holders):
    job = invoke(event_for(WORD_COUNT))
    set_invocation_status(deployment, job["commandId"], "Success")
    backdate_slot(deployment, job["instanceId"], job["jobId"])
    assert reconcile(reaper_app) == 0  # ending open jobs is the sweep's other work
    assert slot_holders()[job["instanceId"]] == {job["jobId"]}


def test_the_sweep_frees_the_slot_of_a_job_that_failed_before_its_command(deployment, invoke, reaper_app):
    job = invoke(event_for(WORD_COUNT))
    deployment.dynamodb.update_item(
        TableName=deployment.job_table,
        Key={"jobId": {"S": job["jobId"]}},
        UpdateExpression="SET #s = :failed REMOVE commandId",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":failed": {"S": "FAILED"}},
    )
    assert reconcile(reaper_app) == 1


def test_the_sweep_frees_a_slot_without_a_record_once_its_dispatch_is_surely_dead(deployment, reaper_app):
    """A dispatch took the slot and died before writing the record: wait out a dispatch's
    lifetime first, since one still running writes its record next."""
    instance_id, job_id = deployment.instance_ids[0], "job-" + "d" * 32
    assert slots.take(deployment.dynamodb, deployment.slot_table, instance_id, job_id, 2)
    assert reconcile(reaper_app) == 0
    backdate_slot(deployment, instance_id, job_id)
    assert reconcile(reaper_app) == 1


def test_the_sweep_frees_a_duplicates_leftover_slot_on_another_instance(deployment, invoke, reaper_app, slot_holders):
    job = invoke(event_for(WORD_COUNT))
    elsewhere = next(i for i in deployment.instance_ids if i != job["instanceId"])
    assert slots.take(deployment.dynamodb, deployment.slot_table, elsewhere, job["jobId"], 2)
    backdate_slot(deployment, elsewhere, job["jobId"])
    assert reconcile(reaper_app) == 1
    assert {i: ids for i, ids in slot_holders().items() if ids} == {job["instanceId"]: {job["jobId"]}}


def test_the_scheduled_sweep_reconciles_slots(deployment, reaper_app):
    instance_id, job_id = deployment.instance_ids[0], "job-" + "e" * 32
    slots.take(deployment.dynamodb, deployment.slot_table, instance_id, job_id, 2)
    backdate_slot(deployment, instance_id, job_id)
    counts = reaper_app.route({"detail-type": "Scheduled Event", "detail": {}})
    assert counts["slotsReleased"] == 1
