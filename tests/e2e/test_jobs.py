"""A job end to end on the local stack: the real state machine, dispatch code, document
script (run by the local agent) and worker image (under a real container engine)."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pytest

from local_stack.client import LocalStackClient, wait_until
from local_stack.images import OFFLINE_BASE, WORKER_TAG, image_present
from tests.e2e.support import containers, derived_image, host_output, job_status, put_job_type, tag_image

EVENTS = Path(__file__).resolve().parents[2] / "events" / "requests"


def catalog_entry(stack: LocalStackClient, name: str) -> dict[str, Any]:
    value = stack.client("ssm").get_parameter(Name=stack.state["catalog_path"] + name)["Parameter"]["Value"]
    entry: dict[str, Any] = json.loads(value)
    return entry


def the_job(stack: LocalStackClient, execution_arn: str) -> dict[str, Any]:
    (job_id,) = stack.job_ids(execution_arn)
    return stack.job(job_id)


def test_word_count_succeeds_and_its_record_ends_succeeded(stack: LocalStackClient) -> None:
    request = json.loads((EVENTS / "word-count.json").read_text())
    outcome = stack.run(request)
    assert outcome.status == "SUCCEEDED", outcome
    text = request["input"]["text"]
    assert outcome.output == {"words": len(text.split()), "lines": len(text.splitlines()), "characters": len(text)}
    job = the_job(stack, outcome.execution_arn)
    assert wait_until(lambda: job_status(stack, job["jobId"]["S"]) == "SUCCEEDED", 15)
    assert wait_until(lambda: not containers(job["jobId"]["S"]), 15), "the container was not removed"
    # The wrapper signalled; the host guard saw it in the log and sent nothing more.
    output = host_output(stack, job["jobId"]["S"])
    assert "run-job: the callback wrapper signalled: nothing to send" in output
    assert "run-job: signalled" not in output


def test_two_job_types_run_different_images(stack: LocalStackClient) -> None:
    word_count = stack.run({"jobType": "word-count", "input": {"text": "a b"}})
    checksum = stack.run({"jobType": "checksum", "input": {"n": 1}})
    assert (word_count.status, checksum.status) == ("SUCCEEDED", "SUCCEEDED")
    images = {the_job(stack, o.execution_arn)["image"]["S"] for o in (word_count, checksum)}
    assert images == {catalog_entry(stack, "word-count")["image"], catalog_entry(stack, "checksum")["image"]}
    assert len(images) == 2


def test_swapping_a_job_types_image_needs_no_redeploy(stack: LocalStackClient, tmp_path: Path) -> None:
    entry = catalog_entry(stack, "checksum")
    put_job_type(stack, "swap-me", entry)
    before = stack.run({"jobType": "swap-me", "input": {}})
    # A different image: the worker image plus a marker the job can see.
    swapped = derived_image("run-job/worker:swapped", 'FROM {WORKER}\nENV IMAGE_VARIANT="swapped"\n', tmp_path)
    put_job_type(
        stack,
        "swap-me",
        {
            **entry,
            "image": swapped,
            "command": [
                "--",
                "sh",
                "-c",
                'echo "{\\"variant\\": \\"$IMAGE_VARIANT\\"}"',
            ],
        },
    )
    time.sleep(1.5)  # the local stack's catalog cache lives 1 s
    after = stack.run({"jobType": "swap-me", "input": {}})
    assert before.status == after.status == "SUCCEEDED", (before, after)
    assert the_job(stack, before.execution_arn)["image"]["S"] == entry["image"]
    assert the_job(stack, after.execution_arn)["image"]["S"] == swapped
    assert after.output == {"variant": "swapped"}


def test_exit_code_3_fails_with_exit_code_and_log_tail(stack: LocalStackClient) -> None:
    outcome = stack.run({"jobType": "checksum", "input": {"exitCode": 3}})
    assert (outcome.status, outcome.error) == ("FAILED", "Job.Failed"), outcome
    assert outcome.cause is not None
    cause = json.loads(outcome.cause)
    assert cause["exitCode"] == 3
    assert "exiting with code 3" in cause["logTail"]


def test_memory_exceeded_is_out_of_memory(stack: LocalStackClient) -> None:
    # checksum's limit is 512 MiB (template.yaml); hold more than that.
    outcome = stack.run({"jobType": "checksum", "input": {"allocateMiB": 700}})
    assert (outcome.status, outcome.error) == ("FAILED", "Job.OutOfMemory"), outcome


def test_missing_image_is_image_pull_failed(stack: LocalStackClient) -> None:
    # A registry on loopback that is not there: the pull fails fast and no traffic leaves the machine.
    entry = {**catalog_entry(stack, "checksum"), "image": "127.0.0.1:9/run-job/absent:1"}
    put_job_type(stack, "absent-image", entry)
    outcome = stack.run({"jobType": "absent-image", "input": {}})
    assert (outcome.status, outcome.error) == ("FAILED", "Job.ImagePullFailed"), outcome


def test_frozen_container_fails_by_heartbeat_timeout(stack: LocalStackClient) -> None:
    heartbeat = 4
    arn = stack.start({"jobType": "checksum", "input": {"freeze": True}, "heartbeatSeconds": heartbeat})
    outcome = stack.wait(arn, timeout=60)
    assert outcome.status == "FAILED"
    # moto's engine reports heartbeat expiry as States.Timeout (AWS: States.HeartbeatTimeout).
    assert outcome.error in ("States.Timeout", "States.HeartbeatTimeout"), outcome
    started = stack.describe(arn)["startDate"]
    stopped = stack.describe(arn)["stopDate"]
    assert (stopped - started).total_seconds() < heartbeat + 10
    job_id = the_job(stack, arn)["jobId"]["S"]
    # SIGTERM cannot reach a stopped process: the stop waits out checksum's 30 s grace, then kills.
    assert wait_until(lambda: not containers(job_id), 90), "the reaper did not stop the frozen container"


def test_image_without_the_wrapper_is_failed_by_the_host_guard(stack: LocalStackClient) -> None:
    bare = "run-job/bare:1"
    tag_image(OFFLINE_BASE if image_present(OFFLINE_BASE) else WORKER_TAG, bare)
    entry = {
        **catalog_entry(stack, "checksum"),
        "image": bare,
        "command": ["sh", "-c", "echo no wrapper in this image >&2; exit 7"],
    }
    put_job_type(stack, "no-wrapper", entry)
    outcome = stack.run({"jobType": "no-wrapper", "input": {}})
    assert (outcome.status, outcome.error) == ("FAILED", "Job.Failed"), outcome
    cause = json.loads(outcome.cause or "{}")
    assert cause["exitCode"] == 7
    assert "no wrapper in this image" in cause["logTail"]


@pytest.mark.parametrize(
    ("request_", "error"),
    [
        ({"jobType": "checksum", "surprise": 1}, "Job.InvalidRequest"),
        ({"input": {}}, "Job.InvalidRequest"),
        ({"jobType": "checksum", "timeoutSeconds": 10**9}, "Job.InvalidRequest"),
        ({"jobType": "checksum; rm -rf /"}, "Job.InvalidRequest"),
        ({"jobType": "not-in-the-catalog"}, "Job.UnknownType"),
    ],
)
def test_bad_requests_fail_named_and_send_nothing(
    stack: LocalStackClient, request_: dict[str, Any], error: str
) -> None:
    before = {command["CommandId"] for command in stack.commands()}
    outcome = stack.run(request_)
    assert (outcome.status, outcome.error) == ("FAILED", error), outcome
    assert stack.job_ids(outcome.execution_arn) == [], "a refused request left a job record"
    # An earlier test's retry may send a command meanwhile: every new command must carry
    # another execution's recorded job (dispatch records before it sends).
    for command in stack.commands():
        if command["CommandId"] not in before:
            job_id = command["Parameters"]["JobId"][0]
            owner = stack.job(job_id)["executionArn"]["S"]
            assert owner != outcome.execution_arn, f"a refused request sent {command['CommandId']}"


def test_200_kib_input_reaches_the_container_byte_for_byte(stack: LocalStackClient) -> None:
    # Mostly ASCII: moto measures the payload limit on ASCII-escaped JSON, AWS on UTF-8.
    job_input = {"text": "0123456789abcdef" * 12_800 + ' "quoted"\n\ttabs, héllo wörld ✓', "n": [1, 2.5, None, True]}
    expected = json.dumps(job_input, separators=(",", ":"), ensure_ascii=False).encode()
    assert len(expected) >= 200 * 1024
    outcome = stack.run({"jobType": "checksum", "input": job_input})
    assert outcome.status == "SUCCEEDED", outcome
    assert outcome.output["file"] == {"sha256": hashlib.sha256(expected).hexdigest(), "bytes": len(expected)}
