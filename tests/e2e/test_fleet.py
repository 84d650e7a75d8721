"""Many jobs on a fleet, on a local stack of its own: 20 worker instances with 2 slots each.

- 200 jobs started at once all finish, each run exactly once, never more than 2 at once on any
  instance, while a burst of throttling hits SSM, DynamoDB and Step Functions. The per-instance
  count is checked three ways: the container engine's own timeline (`docker events`: when each
  job's container was created and destroyed; the job record says which instance ran it), the
  job table (open jobs per instance, sampled) and the slot table (sampled).
- The same dispatch event delivered 5 times at once: one command, one container.
- A batch (a jobs list, then an S3 manifest): one run-job execution per job request.

The stack runs on its own xdist worker (group "fleet"); tests/e2e/test_jobs.py and the others
share the session's smaller stack.
"""

from __future__ import annotations

import collections
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from local_stack.__main__ import down, up
from local_stack.client import TERMINAL, LocalStackClient, wait_until
from local_stack.template import Stack
from tests.e2e.support import ContainerTimeline, most_at_once, require_engine

pytestmark = pytest.mark.xdist_group("fleet")

INSTANCES = 20
SLOTS = 2
# Each job costs the local stack about 3 CPU-seconds (two aws CLI runs on the host side, the
# engine, moto): 200 jobs keep 2 CPUs busy for about 5 minutes. RUN_JOB_FLEET_JOBS runs fewer.
JOBS = int(os.environ.get("RUN_JOB_FLEET_JOBS", "200"))
JOB_SECONDS = 1
FAN_OUT_TIMEOUT_SECONDS = 900
# One burst at the start of the fan-out, on every operation the functions, the host side and the
# callback wrapper make at volume. Each count stays within what any one caller retries, since one
# caller may meet a whole burst alone: the functions' clients 10 attempts (adaptive), the host
# side's aws CLI 5 per try, the wrapper's final signal 4 (adaptive; beyond that it exits 75 and
# the host guard reports Job.Failed rather than a success without the output), its heartbeats 1
# (a failed one waits for the next tick).
THROTTLE_BURST = {
    "ssm:DescribeInstanceInformation": 9,
    "ssm:SendCommand": 9,
    "dynamodb:BatchGetItem": 9,
    "dynamodb:UpdateItem": 9,
    "dynamodb:PutItem": 9,
    "dynamodb:GetItem": 9,
    "stepfunctions:SendTaskHeartbeat": 10,
    "stepfunctions:SendTaskSuccess": 3,
}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStackClient]:
    require_engine()
    state_dir = tmp_path_factory.mktemp("fleet-stack")
    # The sweep is the safety net for lost events; the template's 5 minutes never comes here.
    sweep = os.environ.pop("RUN_JOB_SWEEP_SECONDS", None)
    try:
        state = up(state_dir, instances=INSTANCES, slots=SLOTS)
    finally:
        if sweep is not None:
            os.environ["RUN_JOB_SWEEP_SECONDS"] = sweep
    try:
        yield LocalStackClient(state)
    finally:
        down(state_dir)


def scan(stack: LocalStackClient, table: str) -> list[dict[str, Any]]:
    pages = stack.client("dynamodb").get_paginator("scan").paginate(TableName=table, ConsistentRead=True)
    return [item for page in pages for item in page["Items"]]


def executions(stack: LocalStackClient, state_machine: str, status: str | None = None) -> list[dict[str, Any]]:
    filters = {"statusFilter": status} if status else {}
    pages = (
        stack.client("stepfunctions")
        .get_paginator("list_executions")
        .paginate(stateMachineArn=stack.state[state_machine], **filters)
    )
    return [execution for page in pages for execution in page["executions"]]


def run_commands(stack: LocalStackClient) -> collections.Counter[str]:
    """How many run-container commands each job id got."""
    pages = stack.client("ssm").get_paginator("list_commands").paginate()
    return collections.Counter(
        command["Parameters"]["JobId"][0]
        for page in pages
        for command in page["Commands"]
        if command["DocumentName"] == stack.state["document_name"]
    )


def throttle(stack: LocalStackClient, burst: dict[str, int] | None = None) -> dict[str, dict[str, int]]:
    url = stack.state["endpoint_url"] + "/_local_stack/throttle"
    answer = requests.post(url, json=burst, timeout=10) if burst else requests.get(url, timeout=10)
    answer.raise_for_status()
    status: dict[str, dict[str, int]] = answer.json()
    return status


class Sampler:
    """Every second: open jobs per instance (job table) and slot holders per instance (slot table)."""

    def __init__(self, stack: LocalStackClient) -> None:
        self.stack = stack
        self.most_open: dict[str, int] = collections.Counter()
        self.most_held: dict[str, int] = collections.Counter()
        self.samples = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stopping.wait(1.0):
            open_jobs = collections.Counter(
                item["instanceId"]["S"]
                for item in scan(self.stack, self.stack.state["job_table"])
                if item["status"]["S"] in ("PENDING", "DISPATCHED")
            )
            for item in scan(self.stack, self.stack.state["slot_table"]):
                held = len(item.get("jobs", {}).get("SS", []))
                self.most_held[item["instanceId"]["S"]] = max(self.most_held[item["instanceId"]["S"]], held)
            for instance_id, count in open_jobs.items():
                self.most_open[instance_id] = max(self.most_open[instance_id], count)
            self.samples += 1

    def __enter__(self) -> Sampler:
        self.thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.stopping.set()
        self.thread.join(30)


def test_200_jobs_on_20_instances_run_once_each_never_over_their_slots(fleet: LocalStackClient) -> None:
    # The default heartbeat (300 s): a job queued behind a busy CPU may take a while to beat first.
    request = {"jobType": "checksum", "input": {"sleepSeconds": JOB_SECONDS}}
    names = [f"fleet-{n:03d}-{uuid.uuid4().hex[:8]}" for n in range(JOBS)]
    assert throttle(fleet, THROTTLE_BURST)["remaining"] == THROTTLE_BURST

    started = time.monotonic()
    with ContainerTimeline() as timeline, Sampler(fleet) as sampler:
        with ThreadPoolExecutor(max_workers=8) as pool:
            arns = list(pool.map(lambda name: fleet.start(request, name=name), names))
        assert wait_until(
            lambda: not executions(fleet, "state_machine_arn", "RUNNING"), FAN_OUT_TIMEOUT_SECONDS, interval=2
        ), f"still running after {FAN_OUT_TIMEOUT_SECONDS} s"
        # The last host sides end (and their containers go) just after their executions.
        assert wait_until(lambda: not any(item.get("jobs") for item in scan(fleet, fleet.state["slot_table"])), 60)
    elapsed = time.monotonic() - started

    described = {arn: fleet.describe(arn) for arn in arns}
    statuses = collections.Counter(execution["status"] for execution in described.values())
    failures = [(d["status"], d.get("error"), str(d.get("cause"))[:300]) for d in described.values()]
    assert statuses == {"SUCCEEDED": JOBS}, [failure for failure in failures if failure[0] != "SUCCEEDED"][:5]

    # Nothing was lost to the throttling burst, and the burst did happen.
    assert throttle(fleet)["remaining"] == dict.fromkeys(THROTTLE_BURST, 0)

    # Each execution's job ran exactly once: one container, one command.
    records = {item["jobId"]["S"]: item for item in scan(fleet, fleet.state["job_table"])}
    ours = {job_id: item for job_id, item in records.items() if item["executionArn"]["S"] in described}
    spans = timeline.spans(set(ours))
    ran = collections.Counter(
        ours[job_id]["executionArn"]["S"] for job_id, job_spans in spans.items() for _ in job_spans
    )
    assert ran == dict.fromkeys(described, 1), "an execution ran no container or more than one"
    commands = run_commands(fleet)
    assert {job_id: commands[job_id] for job_id in spans} == dict.fromkeys(spans, 1)

    # Never more than SLOTS at once on any instance: the engine's timeline, the job table, the slots.
    by_instance: dict[str, list[tuple[float, float]]] = collections.defaultdict(list)
    for job_id, job_spans in spans.items():
        by_instance[ours[job_id]["instanceId"]["S"]] += job_spans
    engine_most = {instance_id: most_at_once(instance_spans) for instance_id, instance_spans in by_instance.items()}
    assert max(engine_most.values()) <= SLOTS, engine_most
    assert sampler.samples >= 10
    assert max(sampler.most_open.values()) <= SLOTS, sampler.most_open
    assert max(sampler.most_held.values()) <= SLOTS, sampler.most_held
    all_spans = [span for job_spans in spans.values() for span in job_spans]
    assert most_at_once(all_spans) <= INSTANCES * SLOTS

    # Every instance took work; how evenly is reported.
    per_instance = collections.Counter({instance_id: len(s) for instance_id, s in by_instance.items()})
    assert set(per_instance) == set(fleet.state["instance_ids"])
    first = min(d["startDate"] for d in described.values())
    last = max(d["stopDate"] for d in described.values())
    makespan = (last - first).total_seconds()
    ideal = JOBS * JOB_SECONDS / (INSTANCES * SLOTS)
    container_seconds = sum(end - start for start, end in all_spans)
    print(
        f"\nfan-out: {JOBS} jobs of {JOB_SECONDS} s on {INSTANCES} x {SLOTS} slots: makespan {makespan:.0f} s "
        f"(ideal {ideal:.0f} s; the test took {elapsed:.0f} s); jobs per instance min {min(per_instance.values())} "
        f"max {max(per_instance.values())}; most at once on an instance {max(engine_most.values())}, overall "
        f"{most_at_once(all_spans)}; mean container life {container_seconds / len(all_spans):.1f} s; "
        f"throttled calls {sum(THROTTLE_BURST.values())}; samples {sampler.samples}"
    )


def test_the_same_dispatch_event_five_times_at_once_runs_one_container(fleet: LocalStackClient) -> None:
    """Delivered to the dispatch function directly, as a redelivery would be. The task token is
    not a live one: the container runs, its signals are refused, and it stops."""
    execution_arn = (
        fleet.state["state_machine_arn"].replace(":stateMachine:", ":execution:") + ":dup-" + uuid.uuid4().hex
    )
    event = {
        "taskToken": "AQB" + uuid.uuid4().hex * 8,
        "executionArn": execution_arn,
        "stateName": "RunJob",
        "stateEnteredTime": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "retryCount": 0,
        "request": {"jobType": "checksum", "input": {"sleepSeconds": 2}},
    }
    function = Stack().physical_name("DispatchFunction")
    lambda_client = fleet.client("lambda")

    with ContainerTimeline() as timeline, ThreadPoolExecutor(max_workers=5) as pool:
        replies = list(
            pool.map(
                lambda _: json.loads(
                    lambda_client.invoke(FunctionName=function, Payload=json.dumps(event))["Payload"].read()
                ),
                range(5),
            )
        )
        [job_id] = {reply["jobId"] for reply in replies}
        assert wait_until(lambda: not any(item.get("jobs") for item in scan(fleet, fleet.state["slot_table"])), 90)

    assert len({reply["instanceId"] for reply in replies}) == 1, replies
    assert run_commands(fleet)[job_id] == 1
    assert len(timeline.spans({job_id}).get(job_id, [])) == 1


def test_a_batch_runs_each_job_request_once_from_a_list_or_a_manifest(fleet: LocalStackClient, tmp_path: Path) -> None:
    sfn, s3 = fleet.client("stepfunctions"), fleet.client("s3")
    bucket = fleet.state["output_bucket"]
    listed = [{"jobType": "checksum", "input": {"batch": "list", "n": n}} for n in range(4)]
    manifest = [{"jobType": "word-count", "input": {"text": f"batch manifest {n}"}} for n in range(3)]
    s3.put_object(Bucket=bucket, Key="manifests/fleet.json", Body=json.dumps(manifest).encode())
    before = {execution["executionArn"] for execution in executions(fleet, "state_machine_arn")}

    batches = {
        name: sfn.start_execution(
            stateMachineArn=fleet.state["batch_state_machine_arn"], name=name, input=json.dumps(body)
        )["executionArn"]
        for name, body in (
            (f"list-{uuid.uuid4().hex[:8]}", {"jobs": listed, "maxConcurrency": 2}),
            (f"manifest-{uuid.uuid4().hex[:8]}", {"manifest": {"bucket": bucket, "key": "manifests/fleet.json"}}),
        )
    }
    assert wait_until(
        lambda: all(sfn.describe_execution(executionArn=arn)["status"] in TERMINAL for arn in batches.values()), 240, 1
    )

    for name, arn in batches.items():
        described = sfn.describe_execution(executionArn=arn)
        assert described["status"] == "SUCCEEDED", described
        assert json.loads(described["output"])["ResultWriterDetails"]["Key"].startswith(f"batches/{name}/results/")
    children = [e for e in executions(fleet, "state_machine_arn") if e["executionArn"] not in before]
    inputs = [json.loads(sfn.describe_execution(executionArn=e["executionArn"])["input"]) for e in children]
    assert sorted(map(json.dumps, inputs)) == sorted(map(json.dumps, listed + manifest))  # each once
    assert {e["status"] for e in children} == {"SUCCEEDED"}
    written = s3.get_object(Bucket=bucket, Key=f"batches/{next(iter(batches))}/jobs.json")["Body"].read()
    assert json.loads(written) == listed
