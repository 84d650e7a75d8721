"""Helpers of the end-to-end tests."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from local_stack.client import LocalStackClient, wait_until
from local_stack.images import WORKER_TAG, engine_available


def require_engine() -> None:
    """Skip without a container engine, unless CI demands one: CI must never pass by skipping."""
    if engine_available():
        return
    if os.environ.get("RUN_JOB_REQUIRE_DOCKER") == "1":
        pytest.fail("no container engine reachable (DOCKER_HOST) and RUN_JOB_REQUIRE_DOCKER=1")
    pytest.skip("no container engine reachable (set DOCKER_HOST); end-to-end tests need one")


def containers(job_id: str) -> list[str]:
    """Containers (running or not) labelled with the job id."""
    listed = subprocess.run(
        ["docker", "ps", "--all", "--quiet", "--filter", f"label=run-job.job-id={job_id}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return listed.stdout.split()


def job_status(stack: LocalStackClient, job_id: str) -> str:
    return str(stack.job(job_id)["status"]["S"])


def host_output(stack: LocalStackClient, job_id: str) -> str:
    """What the run-container command of a job printed, once the command has ended."""
    ssm = stack.client("ssm")
    (command,) = [c for c in stack.commands() if c["Comment"] == f"run-job {job_id}"]
    (instance_id,) = command["InstanceIds"]

    def invocation() -> dict[str, Any]:
        found: dict[str, Any] = ssm.get_command_invocation(CommandId=command["CommandId"], InstanceId=instance_id)
        return found

    assert wait_until(lambda: invocation()["Status"] not in ("Pending", "InProgress", "Delayed"), 30)
    return str(invocation()["StandardOutputContent"])


def put_job_type(stack: LocalStackClient, name: str, entry: dict[str, Any]) -> None:
    """Add or swap a catalog entry, as an operator would."""
    stack.client("ssm").put_parameter(
        Name=stack.state["catalog_path"] + name, Type="String", Value=json.dumps(entry), Overwrite=True
    )


def tag_image(source: str, target: str) -> None:
    subprocess.run(["docker", "tag", source, target], check=True)


def derived_image(tag: str, dockerfile: str, workdir: Path) -> str:
    """Build a small image on top of the worker image (another image for a job type)."""
    (workdir / "Dockerfile").write_text(dockerfile.replace("{WORKER}", WORKER_TAG))
    subprocess.run(
        ["docker", "build", "--quiet", "--network", "none", "--tag", tag, str(workdir)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return tag


def running_job(stack: LocalStackClient, execution_arn: str, timeout: float = 60) -> dict[str, Any]:
    """The execution's job, once its container runs."""
    found: list[dict[str, Any]] = []

    def started() -> bool:
        ids = stack.job_ids(execution_arn)
        if ids and containers(ids[-1]):
            found.append(stack.job(ids[-1]))
            return True
        return False

    assert wait_until(started, timeout), "the job's container never started"
    return found[-1]


class ContainerTimeline:
    """The engine's own record of our containers (label run-job.job-id) while the block runs:
    `docker events` create and destroy times, by container name (the job id). The engine may be
    shared (other stacks, other tests): callers keep only the names they know."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.process: subprocess.Popen[str] | None = None
        self.reader: threading.Thread | None = None

    def __enter__(self) -> ContainerTimeline:
        self.process = subprocess.Popen(
            [
                "docker",
                "events",
                "--filter",
                "type=container",
                "--filter",
                "label=run-job.job-id",
                "--filter",
                "event=create",
                "--filter",
                "event=destroy",
                "--format",
                "{{json .}}",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        time.sleep(0.5)  # subscribed before the first container is created
        return self

    def _read(self) -> None:
        assert self.process is not None
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.events.append(json.loads(line))

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        time.sleep(0.5)  # the last destroy events reach the reader
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
        if self.reader is not None:
            self.reader.join(10)

    def spans(self, names: set[str]) -> dict[str, list[tuple[float, float]]]:
        """name -> one (created, destroyed) span per container of that name, in seconds."""
        created: dict[str, list[float]] = {}
        spans: dict[str, list[tuple[float, float]]] = {}
        for event in self.events:
            name = event["Actor"]["Attributes"].get("name", "")
            if name not in names:
                continue
            moment = event["timeNano"] / 1e9
            if event["Action"] == "create":
                created.setdefault(name, []).append(moment)
            elif event["Action"] == "destroy" and created.get(name):
                spans.setdefault(name, []).append((created[name].pop(0), moment))
        for name, starts in created.items():  # never destroyed (yet): open to the end
            spans.setdefault(name, []).extend((start, float("inf")) for start in starts)
        return spans


def most_at_once(spans: list[tuple[float, float]]) -> int:
    """The largest number of spans open at one moment."""
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans], key=lambda e: (e[0], e[1]))
    most = current = 0
    for _, step in edges:
        current += step
        most = max(most, current)
    return most
