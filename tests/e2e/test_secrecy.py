"""The task token while a real job runs on the local stack: in the container's environment only.

`docker inspect` shows a container's command, entrypoint, arguments and labels to anyone who may
talk to the Docker engine, and the process table shows every process's argv to every user of the
host. The token, read from the job record as the host side reads it, must be in Config.Env and
nowhere else. (The host side's own argv and output: tests/host/test_run_secrets.py.)
"""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

from local_stack.client import LocalStackClient
from tests.e2e.support import containers, running_job

SAMPLE_SECONDS = 30


def inspect(job_id: str) -> dict[str, Any] | None:
    found = subprocess.run(
        ["docker", "inspect", "--type", "container", job_id], capture_output=True, text=True, check=False
    )
    if found.returncode != 0:
        return None
    described: dict[str, Any] = json.loads(found.stdout)[0]
    return described


def process_table() -> list[str]:
    listed = subprocess.run(["ps", "-eww", "-o", "args="], capture_output=True, text=True, check=True)
    return listed.stdout.splitlines()


def test_the_token_is_only_in_the_containers_environment(stack: LocalStackClient) -> None:
    arn = stack.start({"jobType": "checksum", "input": {"sleepSeconds": 6}})
    job = running_job(stack, arn)
    job_id, token = job["jobId"]["S"], job["token"]["S"]
    inspected: dict[str, Any] | None = None
    table: list[str] = []
    deadline = time.monotonic() + SAMPLE_SECONDS
    while containers(job_id) and time.monotonic() < deadline:
        table += process_table()
        inspected = inspected or inspect(job_id)
        time.sleep(0.1)
    outcome = stack.wait(arn)

    assert outcome.status == "SUCCEEDED", outcome
    assert inspected is not None, "the container was never inspected while it ran"
    assert f"TASK_TOKEN={token}" in inspected["Config"]["Env"]
    for shown in ("Cmd", "Entrypoint", "Labels"):
        assert token not in json.dumps(inspected["Config"][shown]), f"Config.{shown}"
    for shown in ("Path", "Args", "Name", "HostConfig", "Mounts"):
        assert token not in json.dumps(inspected[shown]), shown
    elsewhere = {**inspected, "Config": {**inspected["Config"], "Env": []}}
    assert token not in json.dumps(elsewhere)
    assert any(job_id in line for line in table), "the sampling never saw the job's host side"
    assert not [line for line in table if token in line]
