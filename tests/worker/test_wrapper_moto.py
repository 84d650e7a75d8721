"""The real callback wrapper, as a subprocess, against moto's executing Step Functions:
each test starts an execution paused in a `lambda:invoke.waitForTaskToken` Task, runs the
wrapper with that task's token, and checks what the execution did."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from wrapper_harness import CallbackMachines, Wrapper

WORD_COUNT = ("--job", "examples.word_count:run")
CHECKSUM = ("--job", "examples.checksum:run")


def cause_of(execution: dict[str, Any]) -> dict[str, Any]:
    cause = json.loads(execution["cause"])
    assert isinstance(cause, dict)
    return cause


def test_job_function_output_is_the_task_output(
    wrapper_for: Callable[..., Wrapper], machines: CallbackMachines
) -> None:
    wrapper = wrapper_for({"text": "one two three\nfour"})

    finished = wrapper.run(*WORD_COUNT)

    assert finished.returncode == 0
    execution = machines.finished(wrapper.task)
    assert execution["status"] == "SUCCEEDED"
    assert json.loads(execution["output"]) == {"words": 4, "lines": 2, "characters": 18}


def test_large_input_reaches_the_job_byte_for_byte(
    wrapper_for: Callable[..., Wrapper], machines: CallbackMachines
) -> None:
    job_input = {"text": "grüße, 世界 " * 15_000, "n": [1, 2.5, None, True]}
    # Not the compact form: the job sees the file's exact bytes as well as the parsed object.
    raw = json.dumps(job_input, ensure_ascii=False, indent=1).encode()
    assert len(raw) > 200 * 1024
    wrapper = wrapper_for(raw_input=raw)

    assert wrapper.run(*CHECKSUM).returncode == 0

    output = json.loads(machines.finished(wrapper.task)["output"])
    compact = json.dumps(job_input, separators=(",", ":"), ensure_ascii=False).encode()
    assert output["file"] == {"sha256": hashlib.sha256(raw).hexdigest(), "bytes": len(raw)}
    assert output["input"] == {"sha256": hashlib.sha256(compact).hexdigest(), "bytes": len(compact)}


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("echo working; echo '{\"thumbnails\": [1, 2]}'; echo", {"thumbnails": [1, 2]}),
        ("echo '{\"a\": 1}'; echo done", {"exitCode": 0}),
        ("echo '[1, 2]'", {"exitCode": 0}),
    ],
    ids=["last-line-json", "last-line-text", "last-line-array"],
)
def test_command_output_is_its_last_json_line(
    wrapper_for: Callable[..., Wrapper], machines: CallbackMachines, script: str, expected: dict[str, Any]
) -> None:
    wrapper = wrapper_for()

    finished = wrapper.run("--", "sh", "-c", script)

    assert finished.returncode == 0
    assert finished.stdout.startswith(b"working\n" if "working" in script else b"")  # streamed through
    assert json.loads(machines.finished(wrapper.task)["output"]) == expected


def test_non_zero_exit_fails_with_exit_code_and_log_tail(
    wrapper_for: Callable[..., Wrapper], machines: CallbackMachines
) -> None:
    wrapper = wrapper_for({"exitCode": 3})

    finished = wrapper.run(*CHECKSUM)

    assert finished.returncode == 3
    execution = machines.finished(wrapper.task)
    assert execution["error"] == "Job.Failed"
    cause = cause_of(execution)
    assert cause["jobId"] == wrapper.job_id
    assert cause["exitCode"] == 3
    assert cause["logTail"].endswith("checksum: exiting with code 3 as the input asks\n")
    assert "logLocation" not in cause  # no JOB_LOG_GROUP: the wrapper does not guess


def test_failure_cause_says_where_the_full_log_is_when_the_host_side_tells(
    wrapper_for: Callable[..., Wrapper], machines: CallbackMachines
) -> None:
    wrapper = wrapper_for({"exitCode": 3})

    assert wrapper.run(*CHECKSUM, JOB_LOG_GROUP="/run-job/jobs").returncode == 3

    cause = cause_of(machines.finished(wrapper.task))
    assert cause["logLocation"] == {"logGroup": "/run-job/jobs", "logStream": wrapper.job_id}
    assert cause["logTail"].endswith("checksum: exiting with code 3 as the input asks\n")


def test_command_that_cannot_start_fails_with_127(
    wrapper_for: Callable[..., Wrapper], machines: CallbackMachines
) -> None:
    wrapper = wrapper_for()

    assert wrapper.run("--", "no-such-command-here").returncode == 127

    execution = machines.finished(wrapper.task)
    assert execution["error"] == "Job.Failed"
    assert "no-such-command-here" in cause_of(execution)["logTail"]


def test_input_that_is_not_json_fails_with_a_clear_cause(
    wrapper_for: Callable[..., Wrapper], machines: CallbackMachines
) -> None:
    wrapper = wrapper_for(raw_input=b'{"text": "no closing brace"')

    assert wrapper.run(*WORD_COUNT).returncode == 1

    execution = machines.finished(wrapper.task)
    assert execution["error"] == "Job.Failed"
    assert f"the job input {wrapper.input_path} is not valid JSON" in cause_of(execution)["logTail"]


def test_job_error_name_and_cause_pass_through(wrapper_for: Callable[..., Wrapper], machines: CallbackMachines) -> None:
    wrapper = wrapper_for({"text": "   "})

    assert wrapper.run(*WORD_COUNT).returncode == 1

    execution = machines.finished(wrapper.task)
    assert execution["error"] == "WordCount.EmptyInput"
    assert execution["cause"] == 'input "text" must be a non-empty string'


def test_command_declares_its_error_in_the_result_file(
    wrapper_for: Callable[..., Wrapper], machines: CallbackMachines
) -> None:
    wrapper = wrapper_for()
    script = """printf '%s' '{"error": "Thumbnail.BadImage", "cause": "not a PNG"}' > "$JOB_RESULT_PATH"; exit 0"""

    # Exit 0 but a declared error: still a failure, and the wrapper says so.
    assert wrapper.run("--", "sh", "-c", script).returncode == 1

    execution = machines.finished(wrapper.task)
    assert (execution["error"], execution["cause"]) == ("Thumbnail.BadImage", "not a PNG")


JOBS_MODULE = """
class Reserved(Exception):
    error = "States.Timeout"

def reserved_name(job_input):
    raise Reserved("pretending to be Step Functions")

def plain_exception(job_input):
    raise KeyError("missing")

def returns_a_list(job_input):
    return [1, 2]

def returns_nan(job_input):
    return {"x": float("nan")}
"""


@pytest.mark.parametrize(
    ("args", "exit_code", "message_part", "tail_part"),
    [
        (("--job", "test_jobs:reserved_name"), 1, "error names starting with Job. or States. are reserved", ""),
        (
            ("--", "sh", "-c", """echo '{"error": "Job.Sneaky"}' > "$JOB_RESULT_PATH"; exit 4"""),
            4,
            "the job declared error 'Job.Sneaky'",
            "",
        ),
        (("--job", "test_jobs:plain_exception"), 1, None, "KeyError: 'missing'"),
        (("--job", "test_jobs:returns_a_list"), 1, None, "returned list, not a dict"),
        (("--job", "test_jobs:returns_nan"), 1, None, "is not JSON"),
        (("--job", "test_jobs:absent"), 1, None, "cannot load job function 'test_jobs:absent'"),
    ],
    ids=["reserved-States", "reserved-Job", "exception", "not-a-dict", "not-json", "no-such-function"],
)
def test_job_failures_are_job_failed(
    wrapper_for: Callable[..., Wrapper],
    machines: CallbackMachines,
    tmp_path: Path,
    args: tuple[str, ...],
    exit_code: int,
    message_part: str | None,
    tail_part: str,
) -> None:
    (tmp_path / "test_jobs.py").write_text(textwrap.dedent(JOBS_MODULE))
    wrapper = wrapper_for(pythonpath=(tmp_path,))

    assert wrapper.run(*args).returncode == exit_code

    execution = machines.finished(wrapper.task)
    assert execution["error"] == "Job.Failed"
    cause = cause_of(execution)
    assert cause["exitCode"] == exit_code
    if message_part is None:
        assert "message" not in cause
    else:
        assert message_part in cause["message"]
    assert tail_part in cause["logTail"]


def test_output_over_256_kib_fails_as_output_too_large(
    wrapper_for: Callable[..., Wrapper], machines: CallbackMachines
) -> None:
    wrapper = wrapper_for()
    print_big = "import json; print(json.dumps({'x': 'a' * 262_144}))"

    assert wrapper.run("--", sys.executable, "-c", print_big).returncode == 1

    execution = machines.finished(wrapper.task)
    assert execution["error"] == "Job.OutputTooLarge"
    # Without OUTPUT_BUCKET (test_wrapper_large_output.py has it set).
    assert cause_of(execution)["message"].startswith("the job's output is 262152 bytes; Step Functions accepts")


def test_heartbeats_keep_a_task_alive_past_its_heartbeat_timeout(
    wrapper_for: Callable[..., Wrapper], machines: CallbackMachines
) -> None:
    wrapper = wrapper_for({"sleepSeconds": 5}, heartbeat_seconds=2)

    assert wrapper.run(*CHECKSUM).returncode == 0

    assert machines.finished(wrapper.task)["status"] == "SUCCEEDED"


def test_without_heartbeats_the_same_task_times_out(
    wrapper_for: Callable[..., Wrapper], machines: CallbackMachines
) -> None:
    """The control for the test above: the wrapper's heartbeats are what keep it alive."""
    wrapper = wrapper_for({"sleepSeconds": 5}, heartbeat_seconds=2)

    finished = wrapper.run(*CHECKSUM, HEARTBEAT_SECONDS="0")

    # moto reports a heartbeat timeout as States.Timeout (AWS: States.HeartbeatTimeout).
    assert machines.finished(wrapper.task)["error"] == "States.Timeout"
    assert finished.returncode == 0
    assert "task already closed: signal not needed" in finished.events()


def test_closed_task_stops_the_job_without_signalling(
    wrapper_for: Callable[..., Wrapper], machines: CallbackMachines, sfn: Any
) -> None:
    wrapper = wrapper_for({"sleepSeconds": 60}, heartbeat_seconds=3)  # a heartbeat a second
    run = wrapper.start(*CHECKSUM)
    run.wait_for_log("job started")
    (job_pid,) = run.job_pids()

    sfn.stop_execution(executionArn=wrapper.task.execution_arn)
    stopped_at = time.monotonic()
    finished = run.finish()

    assert finished.returncode == 143
    assert time.monotonic() - stopped_at < 10, "the job was not stopped before its 60 s sleep ended"
    with pytest.raises(ProcessLookupError):
        os.kill(job_pid, 0)
    assert "task closed: stopping the job" in finished.events()
    assert not {"signalled success", "signalled failure"} & set(finished.events())
    # AWS would show ABORTED; moto 5.2.5 ends a stopped callback Task as FAILED States.Timeout.
    assert machines.status(wrapper.task) != "RUNNING"
    assert not {"TaskSucceeded", "TaskFailed"} & set(machines.history_types(wrapper.task))


def test_sigterm_stops_the_job_and_leaves_the_signal_to_whoever_stopped_it(
    wrapper_for: Callable[..., Wrapper], machines: CallbackMachines, sfn: Any
) -> None:
    wrapper = wrapper_for({"sleepSeconds": 60})
    run = wrapper.start(*CHECKSUM)
    run.wait_for_log("job started")

    run.process.send_signal(signal.SIGTERM)
    finished = run.finish(seconds=20)

    assert finished.returncode == 143
    # The host guard (Job.Cancelled) or the reaper (Job.HostLost) signals, not the wrapper.
    assert machines.status(wrapper.task) == "RUNNING"
    sfn.stop_execution(executionArn=wrapper.task.execution_arn)


def test_job_killed_by_sigkill_is_left_to_the_host_guard(
    wrapper_for: Callable[..., Wrapper], machines: CallbackMachines, sfn: Any
) -> None:
    wrapper = wrapper_for()

    finished = wrapper.run("--", "sh", "-c", "kill -KILL $$")

    assert finished.returncode == 137
    assert "job killed by SIGKILL (out of memory?): the host guard signals" in finished.events()
    assert machines.status(wrapper.task) == "RUNNING"
    sfn.stop_execution(executionArn=wrapper.task.execution_arn)


def test_frozen_job_stops_heartbeats_and_the_task_times_out(
    wrapper_for: Callable[..., Wrapper], machines: CallbackMachines
) -> None:
    wrapper = wrapper_for({"freeze": True}, heartbeat_seconds=2)
    run = wrapper.start(*CHECKSUM)

    execution = machines.finished(wrapper.task, seconds=20)

    assert execution["error"] == "States.Timeout"
    state = Path(f"/proc/{run.process.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    assert state == "T", "the wrapper is not stopped"
    run.kill()


def test_the_job_never_sees_the_task_token(wrapper_for: Callable[..., Wrapper], machines: CallbackMachines) -> None:
    wrapper = wrapper_for()

    finished = wrapper.run("--", "env")

    job_env = dict(line.split("=", 1) for line in finished.stdout.decode().splitlines() if "=" in line)
    assert job_env["JOB_ID"] == wrapper.job_id
    assert job_env["JOB_INPUT_PATH"] == str(wrapper.input_path)
    assert "TASK_TOKEN" not in job_env
    assert machines.finished(wrapper.task)["status"] == "SUCCEEDED"


def test_logs_are_json_lines_with_the_token_hash_not_the_token(
    wrapper_for: Callable[..., Wrapper], machines: CallbackMachines
) -> None:
    wrapper = wrapper_for({"text": "a b"})

    finished = wrapper.run(*WORD_COUNT)

    token_hash = hashlib.sha256(wrapper.task.token.encode()).hexdigest()[:12]
    records = finished.logs()
    events = [record["event"] for record in records if record["event"] != "heartbeat sent"]
    assert events == ["job started", "job ended", "signalled success"]
    assert "heartbeat sent" in [record["event"] for record in records]
    assert all(record["jobId"] == wrapper.job_id and record["tokenHash"] == token_hash for record in records)
    assert machines.finished(wrapper.task)["status"] == "SUCCEEDED"
