"""A burst of throttling loses nothing: the functions' clients retry with adaptive backoff
(Config(retries={"mode": "adaptive"})), and a throttled call is one AWS did not carry out, so
each retry is the first real attempt (local_stack/throttle.py answers before moto runs it)."""

from __future__ import annotations

import collections

from .support import event_for, job_request, raised, run_together

WORD_COUNT = job_request("word-count.json")
DISPATCHES = 6  # every slot of the test pool (3 instances x 2)
THREAD_TIMEOUT_SECONDS = 120


def test_a_throttling_burst_during_dispatches_loses_no_job(
    deployment, dispatch_app, invoke, throttling, commands, jobs, slot_holders
):
    burst = {
        "ssm:DescribeInstanceInformation": 1,
        "ec2:DescribeTags": 1,
        "dynamodb:BatchGetItem": 1,
        "dynamodb:UpdateItem": 2,  # slot takes and status updates
        "dynamodb:PutItem": 2,
        "ssm:SendCommand": 2,
    }
    sends: list[str] = []
    dispatch_app.ssm.meta.events.register("before-send.ssm.SendCommand", lambda **_: sends.append("attempt"))
    throttling.arm(burst)
    results = run_together([lambda: invoke(event_for(WORD_COUNT))] * DISPATCHES, THREAD_TIMEOUT_SECONDS)

    assert raised(results) == []
    assert throttling.status() == {"remaining": dict.fromkeys(burst, 0), "served": burst}
    job_ids = {result["jobId"] for result in results}
    assert len(job_ids) == DISPATCHES
    assert {item["jobId"]["S"]: item["status"]["S"] for item in jobs()} == dict.fromkeys(job_ids, "DISPATCHED")
    # One command per job, though SendCommand has no client token: a throttled call never ran.
    per_job = collections.Counter(command["Parameters"]["JobId"][0] for command in commands())
    assert per_job == dict.fromkeys(job_ids, 1)
    assert len(sends) == DISPATCHES + burst["ssm:SendCommand"]  # each throttled call was retried
    assert set().union(*slot_holders().values()) == job_ids


def test_a_throttling_burst_while_a_command_fails_loses_no_signal_or_slot(
    deployment, invoke, reaper_app, failed_tasks, throttling, slot_holders
):
    job = invoke(event_for(WORD_COUNT))
    burst = {"ssm:ListCommands": 1, "dynamodb:UpdateItem": 2, "dynamodb:GetItem": 1, "stepfunctions:SendTaskFailure": 2}
    throttling.arm(burst)

    reaper_app.route(
        {
            "detail-type": "EC2 Command Invocation Status-change Notification",
            "detail": {"command-id": job["commandId"], "instance-id": job["instanceId"], "status": "Failed"},
        }
    )

    assert throttling.status()["served"] == burst
    assert [sent["error"] for sent in failed_tasks] == ["Job.DeliveryFailed"]
    assert not any(slot_holders().values())
    item = deployment.dynamodb.get_item(TableName=deployment.job_table, Key={"jobId": {"S": job["jobId"]}})["Item"]
    assert item["status"]["S"] == "FAILED"
