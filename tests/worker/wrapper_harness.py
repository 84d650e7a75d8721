"""Helpers for the callback wrapper tests: a moto server (executing Step Functions) on
loopback, callback Task state machines, and the REAL wrapper run as a subprocess the way
the worker image runs it."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import boto3

WORKER_IMAGE_DIR = Path(__file__).resolve().parents[2] / "worker_image"
REGION = "us-east-1"
# Bounds of every wait in these tests.
STARTUP_SECONDS = 30
WRAPPER_SECONDS = 60


def free_port() -> int:
    """A port free now, then used as a FIXED port: moto's engine calls itself back on
    localhost:$MOTO_PORT, which a server started on port 0 cannot tell it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(check: Callable[[], Any], seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")


def aws_client(service: Literal["iam", "lambda", "s3", "stepfunctions"], endpoint: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@dataclass(frozen=True)
class Task:
    """One execution paused in a callback Task, and the token it hands out."""

    execution_arn: str
    token: str


class CallbackMachines:
    """State machines with one `lambda:invoke.waitForTaskToken` Task; moto's Lambda simple
    backend never runs code, so the token is read back from the TaskScheduled event."""

    def __init__(self, endpoint: str, sfn: Any) -> None:
        self._sfn = sfn
        iam = aws_client("iam", endpoint)
        self._role = iam.create_role(RoleName=f"worker-tests-{uuid.uuid4().hex[:8]}", AssumeRolePolicyDocument="{}")[
            "Role"
        ]["Arn"]
        code = io.BytesIO()
        with zipfile.ZipFile(code, "w") as archive:
            archive.writestr("dispatch.py", "def handler(event, context):\n    return event\n")
        self._function_arn = aws_client("lambda", endpoint).create_function(
            FunctionName=f"dispatch-{uuid.uuid4().hex[:8]}",
            Runtime="python3.12",
            Role=self._role,
            Handler="dispatch.handler",
            Code={"ZipFile": code.getvalue()},
        )["FunctionArn"]
        self._machines: dict[int, str] = {}

    def _machine(self, heartbeat_seconds: int) -> str:
        if heartbeat_seconds not in self._machines:
            task = {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                "Parameters": {"FunctionName": self._function_arn, "Payload": {"token.$": "$$.Task.Token"}},
                "HeartbeatSeconds": heartbeat_seconds,
                "TimeoutSeconds": 120,
                "End": True,
            }
            definition = {"StartAt": "RunJob", "States": {"RunJob": task}}
            self._machines[heartbeat_seconds] = self._sfn.create_state_machine(
                name=f"callback-{heartbeat_seconds}-{uuid.uuid4().hex[:8]}",
                definition=json.dumps(definition),
                roleArn=self._role,
            )["stateMachineArn"]
        return self._machines[heartbeat_seconds]

    def start(self, heartbeat_seconds: int) -> Task:
        execution_arn = self._sfn.start_execution(
            stateMachineArn=self._machine(heartbeat_seconds), name=f"run-{uuid.uuid4().hex}", input="{}"
        )["executionArn"]

        def scheduled() -> str | None:
            for event in self._sfn.get_execution_history(executionArn=execution_arn)["events"]:
                if event["type"] == "TaskScheduled":
                    parameters = json.loads(event["taskScheduledEventDetails"]["parameters"])
                    return str(parameters["Payload"]["token"])
            return None

        return Task(execution_arn, wait_until(scheduled, STARTUP_SECONDS, "the TaskScheduled event"))

    def finished(self, task: Task, seconds: float = 30) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            execution = self._sfn.describe_execution(executionArn=task.execution_arn)
            return None if execution["status"] == "RUNNING" else execution

        return dict(wait_until(done, seconds, "the execution to finish"))

    def status(self, task: Task) -> str:
        return str(self._sfn.describe_execution(executionArn=task.execution_arn)["status"])

    def history_types(self, task: Task) -> list[str]:
        return [event["type"] for event in self._sfn.get_execution_history(executionArn=task.execution_arn)["events"]]


@dataclass(frozen=True)
class Finished:
    returncode: int
    stdout: bytes
    stderr: bytes

    def logs(self) -> list[dict[str, Any]]:
        return log_records(self.stderr)

    def events(self) -> list[str]:
        return [record["event"] for record in self.logs()]


@dataclass
class WrapperRun:
    """A running wrapper; its stdout and stderr go to files so a test can read them live."""

    process: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path
    token: str

    def job_pids(self) -> list[int]:
        """The wrapper's children (its job process)."""
        pids = []
        for children in Path(f"/proc/{self.process.pid}/task").glob("*/children"):
            pids += [int(pid) for pid in children.read_text().split()]
        return pids

    def wait_for_log(self, event: str, seconds: float = STARTUP_SECONDS) -> dict[str, Any]:
        def logged() -> dict[str, Any] | None:
            records = log_records(self.stderr_path.read_bytes())
            return next((record for record in records if record["event"] == event), None)

        return dict(wait_until(logged, seconds, f"the wrapper to log {event!r}"))

    def finish(self, seconds: float = WRAPPER_SECONDS) -> Finished:
        self.process.wait(seconds)
        finished = Finished(self.process.returncode, self.stdout_path.read_bytes(), self.stderr_path.read_bytes())
        assert self.token.encode() not in finished.stdout
        assert self.token.encode() not in finished.stderr
        return finished

    def kill(self) -> None:
        """SIGKILL the job's group and the wrapper's (a frozen or left-over run)."""
        for pgid in [*self.job_pids(), self.process.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
        self.process.wait(10)


@dataclass
class Wrapper:
    """How to run the real callback wrapper for one task, with the container's environment."""

    endpoint: str
    task: Task
    input_path: Path
    heartbeat_seconds: int
    runs: list[WrapperRun]
    pythonpath: tuple[Path, ...] = ()
    job_id: str = "job-0123456789abcdef0123456789abcdef"

    def env(self, **overrides: str) -> dict[str, str]:
        env = {
            "PATH": os.environ["PATH"],
            "PYTHONPATH": os.pathsep.join(str(path) for path in (WORKER_IMAGE_DIR, *self.pythonpath)),
            "TASK_TOKEN": self.task.token,
            "JOB_ID": self.job_id,
            "JOB_INPUT_PATH": str(self.input_path),
            "HEARTBEAT_SECONDS": str(self.heartbeat_seconds),
            "AWS_REGION": REGION,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        }
        return {**env, **overrides}

    def start(self, *args: str, **env: str) -> WrapperRun:
        output_dir = self.input_path.parent / f"run-{len(self.runs)}"
        output_dir.mkdir()
        stdout_path, stderr_path = output_dir / "stdout", output_dir / "stderr"
        with stdout_path.open("wb") as stdout, stderr_path.open("wb") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", "callback_wrapper", *args],
                env=self.env(**env),
                stdout=stdout,
                stderr=stderr,
                # Its own group, so cleaning up never signals pytest itself.
                start_new_session=True,
            )
        run = WrapperRun(process, stdout_path, stderr_path, self.task.token)
        self.runs.append(run)
        return run

    def run(self, *args: str, **env: str) -> Finished:
        return self.start(*args, **env).finish()


def log_records(stderr: bytes) -> list[dict[str, Any]]:
    """The wrapper's own JSON log lines among the job's stderr."""
    records = []
    for line in stderr.decode(errors="replace").splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if isinstance(record, dict) and "event" in record:
                records.append(record)
    return records
