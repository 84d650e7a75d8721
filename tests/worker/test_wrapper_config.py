"""The wrapper's environment, command line and log format, without any AWS."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
from wrapper_harness import WORKER_IMAGE_DIR, free_port

from callback_wrapper.jsonlog import JsonLog, LockedStream, token_hash
from callback_wrapper.outcome import JobContext
from callback_wrapper.settings import ConfigError, settings_from_env
from callback_wrapper.wrapper import job_command, job_environment

TOKEN = "AAAAKgAAAAIAAAAAAAAAAa-secret-token"
ENV = {"TASK_TOKEN": TOKEN, "JOB_ID": "job-1", "AWS_REGION": "eu-west-1"}


def test_defaults() -> None:
    settings = settings_from_env(ENV)

    assert settings.input_path == "/job/input.json"
    assert settings.heartbeat_seconds == 0
    assert settings.heartbeat_interval is None
    assert settings.stop_grace_seconds == 5
    assert settings.endpoint_url is None
    assert settings.context == JobContext("job-1", output_bucket=None, log_group=None)


@pytest.mark.parametrize(("heartbeat", "interval"), [("1", 1), ("2", 1), ("3", 1), ("7", 2), ("120", 40)])
def test_heartbeat_interval_is_a_third_and_at_least_a_second(heartbeat: str, interval: int) -> None:
    assert settings_from_env({**ENV, "HEARTBEAT_SECONDS": heartbeat}).heartbeat_interval == interval


def test_region_and_endpoint_are_read_explicitly() -> None:
    settings = settings_from_env(
        {**ENV, "AWS_REGION": "", "AWS_DEFAULT_REGION": "ap-south-1", "AWS_ENDPOINT_URL": "http://127.0.0.1:1"}
    )

    assert (settings.region, settings.endpoint_url) == ("ap-south-1", "http://127.0.0.1:1")


def test_output_bucket_and_log_group_reach_the_job_context() -> None:
    settings = settings_from_env({**ENV, "OUTPUT_BUCKET": "stack-outputbucket-1a2b", "JOB_LOG_GROUP": "/stack/jobs"})

    assert settings.context == JobContext("job-1", output_bucket="stack-outputbucket-1a2b", log_group="/stack/jobs")


@pytest.mark.parametrize(
    "change",
    [
        {"TASK_TOKEN": ""},
        {"JOB_ID": ""},
        {"JOB_ID": "job 1; rm -rf /"},
        {"AWS_REGION": ""},
        {"HEARTBEAT_SECONDS": "-1"},
        {"HEARTBEAT_SECONDS": "1.5"},
        {"STOP_GRACE_SECONDS": "²"},
        {"OUTPUT_BUCKET": "Not_A_Bucket"},
        {"OUTPUT_BUCKET": "s3://bucket"},
        {"JOB_LOG_GROUP": "jobs; echo"},
        {"JOB_LOG_GROUP": "g" * 513},
    ],
)
def test_bad_environment_is_refused(change: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as raised:
        settings_from_env({**ENV, **change})
    assert TOKEN not in str(raised.value)


def test_token_is_not_in_the_settings_repr_or_a_traceback() -> None:
    settings = settings_from_env(ENV)

    assert TOKEN not in repr(settings)
    try:
        raise ValueError(settings)
    except ValueError:
        assert TOKEN not in traceback.format_exc()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--job", "examples.word_count:run"],
            [sys.executable, "-u", "-m", "callback_wrapper.run_function", "examples.word_count:run"],
        ),
        (["--", "convert", "--to", "png"], ["convert", "--to", "png"]),
        (["--", "--job", "x:y"], ["--job", "x:y"]),
    ],
)
def test_job_command(args: list[str], expected: list[str]) -> None:
    assert job_command(args) == expected


@pytest.mark.parametrize("args", [[], ["--job"], ["--job", "no_function"], ["--job", "a:b", "extra"], ["--"], ["cmd"]])
def test_job_command_refuses(args: list[str]) -> None:
    assert job_command(args) is None


def test_usage_error_exits_2_without_running_anything() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "callback_wrapper", "--job"],
        env={**ENV, "PYTHONPATH": str(WORKER_IMAGE_DIR)},
        capture_output=True,
        timeout=30,
        check=False,
    )

    assert completed.returncode == 2
    assert completed.stderr.startswith(b"usage: python -m callback_wrapper --job module:function")


def test_missing_token_exits_2_with_a_json_log_line() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "callback_wrapper", "--", "true"],
        env={"JOB_ID": "job-1", "AWS_REGION": "eu-west-1", "PYTHONPATH": str(WORKER_IMAGE_DIR)},
        capture_output=True,
        timeout=30,
        check=False,
    )

    assert completed.returncode == 2
    record = json.loads(completed.stderr)
    assert (record["level"], record["event"], record["message"]) == (
        "error",
        "bad environment",
        "TASK_TOKEN is not set",
    )


def test_job_environment_drops_the_token_and_names_the_input() -> None:
    env = job_environment({**ENV, "PATH": "/bin"}, settings_from_env(ENV))

    assert "TASK_TOKEN" not in env
    assert env == {"JOB_ID": "job-1", "AWS_REGION": "eu-west-1", "PATH": "/bin", "JOB_INPUT_PATH": "/job/input.json"}


def test_log_lines_carry_job_id_and_token_hash_and_redact_the_token() -> None:
    stream = io.BytesIO()
    log = JsonLog(LockedStream(stream), "job-1", TOKEN)

    log.warning("heartbeat failed", message=f"the service echoed {TOKEN} back")

    record = json.loads(stream.getvalue())
    assert record["jobId"] == "job-1"
    assert record["tokenHash"] == token_hash(TOKEN) == hashlib.sha256(TOKEN.encode()).hexdigest()[:12]
    assert record["message"] == "the service echoed [task token] back"
    assert TOKEN.encode() not in stream.getvalue()


def test_unreachable_step_functions_retries_heartbeats_and_exits_75(tmp_path: Path) -> None:
    """Heartbeat errors are retried on the next tick; a success that cannot be delivered
    exits 75, so the host guard reports a failure instead of a success without output."""
    (tmp_path / "input.json").write_text('{"sleepSeconds": 4}')
    env = {
        **ENV,
        "PYTHONPATH": str(WORKER_IMAGE_DIR),
        "JOB_INPUT_PATH": str(tmp_path / "input.json"),
        "HEARTBEAT_SECONDS": "3",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",  # nothing listens there
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }

    completed = subprocess.run(
        [sys.executable, "-m", "callback_wrapper", "--job", "examples.checksum:run"],
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )

    assert completed.returncode == 75
    events = [json.loads(line)["event"] for line in completed.stderr.decode().splitlines()]
    assert events.count("heartbeat failed: retrying on the next tick") >= 2
    assert events[-1] == "signal not delivered"
    assert TOKEN.encode() not in completed.stderr
