"""The run-batch state machine (statemachine/run_batch.asl.json, as template.yaml substitutes
it) in moto's executing engine: a jobs list or an S3 manifest, one run-job execution per job
request, the Map's limits from the input, refusals before anything starts.

A stand-in takes the run-job state machine's name here (a Pass state echoing the job request):
the unit tests have no dispatch function to run; tests/e2e/test_fleet.py runs the real chain.
Known moto gaps (docs/design.md, "Batches"): its Distributed Map ignores
ToleratedFailurePercentage and its ResultWriter writes the manifest only."""

from __future__ import annotations

import json
import time
from typing import Any

import boto3
import pytest
from moto.core.config import default_user_config

from local_stack import resources

EXECUTION_TIMEOUT_SECONDS = 60
CHILD = {
    "StartAt": "Echo",
    "States": {
        "Echo": {"Type": "Wait", "Seconds": 1, "Next": "Done"},
        "Done": {"Type": "Pass", "Parameters": {"ran.$": "$"}, "End": True},
    },
}


@pytest.fixture
def batch(deployment: Any, monkeypatch: pytest.MonkeyPatch, boto_session: boto3.Session) -> dict[str, Any]:
    monkeypatch.setitem(default_user_config["stepfunctions"], "execute_state_machine", True)
    stack = deployment.stack
    sfn, iam, s3 = (boto_session.client(name) for name in ("stepfunctions", "iam", "s3"))
    bucket = resources.create_bucket(s3, stack)
    role = iam.create_role(RoleName="batch-test", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    child = sfn.create_state_machine(
        name=stack.physical_name("RunJobStateMachine"), definition=json.dumps(CHILD), roleArn=role
    )["stateMachineArn"]
    arn = resources.create_state_machine(sfn, iam, stack, "RunBatchStateMachine")
    return {"arn": arn, "child": child, "bucket": bucket, "sfn": sfn, "s3": s3}


def run(batch: dict[str, Any], name: str, batch_input: dict[str, Any]) -> dict[str, Any]:
    sfn = batch["sfn"]
    arn = sfn.start_execution(stateMachineArn=batch["arn"], name=name, input=json.dumps(batch_input))["executionArn"]
    deadline = time.monotonic() + EXECUTION_TIMEOUT_SECONDS
    while (described := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
        assert time.monotonic() < deadline, f"batch {name} still running"
        time.sleep(0.2)
    return dict(described)


def children(batch: dict[str, Any]) -> list[dict[str, Any]]:
    sfn = batch["sfn"]
    listed = sfn.list_executions(stateMachineArn=batch["child"])["executions"]
    return [sfn.describe_execution(executionArn=child["executionArn"]) for child in listed]


def keys(batch: dict[str, Any]) -> list[str]:
    return sorted(item["Key"] for item in batch["s3"].list_objects_v2(Bucket=batch["bucket"]).get("Contents", []))


REQUESTS = [{"jobType": "checksum", "input": {"n": n}} for n in range(3)]


def test_a_jobs_list_runs_each_request_as_a_run_job_execution(batch):
    described = run(batch, "list-1", {"jobs": REQUESTS})

    assert described["status"] == "SUCCEEDED", described
    ran = children(batch)
    assert sorted(json.loads(child["input"])["input"]["n"] for child in ran) == [0, 1, 2]
    assert {child["status"] for child in ran} == {"SUCCEEDED"}
    manifest = batch["s3"].get_object(Bucket=batch["bucket"], Key="batches/list-1/jobs.json")["Body"].read()
    assert json.loads(manifest) == REQUESTS
    output = json.loads(described["output"])
    assert output["ResultWriterDetails"]["Bucket"] == batch["bucket"]
    assert output["ResultWriterDetails"]["Key"].startswith("batches/list-1/results/")


def test_a_manifest_is_read_from_s3_and_nothing_else_is_written(batch):
    batch["s3"].put_object(Bucket=batch["bucket"], Key="manifests/m.json", Body=json.dumps(REQUESTS[:2]))

    described = run(batch, "manifest-1", {"manifest": {"bucket": batch["bucket"], "key": "manifests/m.json"}})

    assert described["status"] == "SUCCEEDED", described
    assert sorted(json.loads(child["input"])["input"]["n"] for child in children(batch)) == [0, 1]
    assert not [key for key in keys(batch) if key.endswith("jobs.json")]


def test_max_concurrency_bounds_the_running_children(batch):
    requests = [{"jobType": "checksum", "input": {"n": n}} for n in range(4)]
    described = run(batch, "limited-1", {"jobs": requests, "maxConcurrency": 2})
    assert described["status"] == "SUCCEEDED", described
    spans = [(child["startDate"], child["stopDate"]) for child in children(batch)]
    most = max(sum(start <= moment < stop for start, stop in spans) for moment, _ in spans)
    assert most == 2


@pytest.mark.parametrize(
    "batch_input",
    [
        {},
        {"jobs": REQUESTS, "manifest": {"bucket": "b", "key": "k"}},
        {"manifest": {"bucket": "b"}},
        {"manifest": {"key": "k"}},
        {"manifest": "s3://b/k"},
        {"jobs": REQUESTS, "maxConcurrency": 0},
        {"jobs": REQUESTS, "maxConcurrency": 10_001},
        {"jobs": REQUESTS, "maxConcurrency": "10"},
        {"jobs": REQUESTS, "toleratedFailurePercentage": 101},
        {"jobs": REQUESTS, "toleratedFailurePercentage": -1},
    ],
    ids=[
        "empty",
        "both",
        "manifest-without-key",
        "manifest-without-bucket",
        "manifest-not-object",
        "concurrency-zero",
        "concurrency-too-high",
        "concurrency-string",
        "tolerance-too-high",
        "tolerance-negative",
    ],
)
def test_an_invalid_batch_is_refused_before_anything_starts(batch_input, batch):
    described = run(batch, "refused-1", batch_input)
    assert (described["status"], described.get("error")) == ("FAILED", "Batch.InvalidRequest")
    assert children(batch) == []
    assert keys(batch) == []
