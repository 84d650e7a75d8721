"""Outputs over Step Functions' 256 KiB: the real wrapper, as a subprocess, writes them to an
output bucket in the moto server and the execution's output points to them."""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from collections.abc import Callable
from typing import Any

import pytest
from wrapper_harness import CallbackMachines, Wrapper

from callback_wrapper.outcome import MAX_OUTPUT_BYTES

CHECKSUM = ("--job", "examples.checksum:run")


def compact(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def checksum_output(job_input: dict[str, Any], filler_bytes: int) -> dict[str, Any]:
    """What examples.checksum returns for this input, worked out independently."""

    def digest(data: bytes) -> dict[str, Any]:
        return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}

    raw = json.dumps(job_input).encode()  # as wrapper_for writes the input file
    return {"input": digest(compact(job_input)), "file": digest(raw), "heldMiB": 0, "filler": "x" * filler_bytes}


def pointer_to(bucket: str, key: str, body: bytes) -> dict[str, Any]:
    return {
        "outputLocation": {"bucket": bucket, "key": key, "uri": f"s3://{bucket}/{key}"},
        "bytes": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
    }


# A Python job function; and a command whose last stdout line is JSON with spaces and \u escapes,
# which is stored compact and as UTF-8 (what the task would have received, had it fitted).
JOB_INPUT = {"outputBytes": 300 * 1024}
COMMAND_OUTPUT = {"text": "grüße " * 50_000, "n": [1, 2.5, None]}
PRINT_COMMAND_OUTPUT = "import json; print(json.dumps({'text': 'grüße ' * 50_000, 'n': [1, 2.5, None]}))"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (CHECKSUM, checksum_output(JOB_INPUT, 300 * 1024)),
        (("--", sys.executable, "-c", PRINT_COMMAND_OUTPUT), COMMAND_OUTPUT),
    ],
    ids=["job-function", "command-stdout"],
)
def test_output_over_256_kib_is_stored_and_the_task_output_points_to_it(
    wrapper_for: Callable[..., Wrapper],
    machines: CallbackMachines,
    s3: Any,
    output_bucket: str,
    args: tuple[str, ...],
    expected: dict[str, Any],
) -> None:
    body = compact(expected)
    assert len(body) > MAX_OUTPUT_BYTES
    wrapper = wrapper_for(JOB_INPUT)

    finished = wrapper.run(*args, OUTPUT_BUCKET=output_bucket)

    assert finished.returncode == 0
    assert finished.events()[-3:] == ["job ended", "output stored", "signalled success"]
    execution = machines.finished(wrapper.task)
    assert execution["status"] == "SUCCEEDED"
    key = f"outputs/{wrapper.job_id}.json"
    assert json.loads(execution["output"]) == pointer_to(output_bucket, key, body)
    stored = s3.get_object(Bucket=output_bucket, Key=key)
    assert stored["Body"].read() == body
    assert (stored["ContentType"], stored["ServerSideEncryption"]) == ("application/json", "AES256")
    checksum = s3.head_object(Bucket=output_bucket, Key=key, ChecksumMode="ENABLED")["ChecksumSHA256"]
    assert checksum == base64.b64encode(hashlib.sha256(body).digest()).decode()


def test_output_under_256_kib_is_the_task_output_even_with_a_bucket(
    wrapper_for: Callable[..., Wrapper], machines: CallbackMachines, s3: Any, output_bucket: str
) -> None:
    wrapper = wrapper_for({"outputBytes": 1000})

    assert wrapper.run(*CHECKSUM, OUTPUT_BUCKET=output_bucket).returncode == 0

    assert json.loads(machines.finished(wrapper.task)["output"]) == checksum_output({"outputBytes": 1000}, 1000)
    assert "Contents" not in s3.list_objects_v2(Bucket=output_bucket)


def test_output_that_cannot_be_stored_fails_the_task_saying_why(
    wrapper_for: Callable[..., Wrapper], machines: CallbackMachines
) -> None:
    wrapper = wrapper_for(JOB_INPUT)

    finished = wrapper.run(*CHECKSUM, OUTPUT_BUCKET="no-such-output-bucket")

    assert finished.returncode == 1
    assert "signalled success" not in finished.events()
    execution = machines.finished(wrapper.task)
    assert execution["error"] == "Job.Failed"
    cause = json.loads(execution["cause"])
    body_bytes = len(compact(checksum_output(JOB_INPUT, 300 * 1024)))
    assert cause["message"] == (
        f"the job's output ({body_bytes} bytes) could not be written to "
        f"s3://no-such-output-bucket/outputs/{wrapper.job_id}.json: NoSuchBucket: The specified bucket does not exist"
    )
    assert cause["exitCode"] == 0
