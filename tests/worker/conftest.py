"""Fixtures for the callback wrapper tests (helpers in wrapper_harness.py)."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from wrapper_harness import (
    STARTUP_SECONDS,
    WORKER_IMAGE_DIR,
    CallbackMachines,
    Wrapper,
    WrapperRun,
    aws_client,
    free_port,
    wait_until,
)

# The wrapper's modules are imported by the unit tests; the wrapper itself always runs
# as a subprocess with PYTHONPATH pointing here, as in the image.
sys.path.insert(0, str(WORKER_IMAGE_DIR))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "docker: needs a container engine (skipped without one unless RUN_JOB_REQUIRE_DOCKER=1)"
    )


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One moto server per test process (so per xdist worker): a subprocess, so no other
    test's in-process mock can reset it, on its own fixed port."""
    port = free_port()
    log = (tmp_path_factory.mktemp("moto") / "server.log").open("wb")
    server = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).with_name("moto_server_keeping_cause.py")),
            "-H",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        env={**os.environ, "MOTO_PORT": str(port)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def moto_api(method: str, path: str, body: str | None = None) -> int:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            connection.request(method, path, body=body)
            return connection.getresponse().status
        finally:
            connection.close()

    def ready() -> bool:
        try:
            return moto_api("GET", "/moto-api/") == 200
        except OSError:
            assert server.poll() is None, "moto server exited; see its log"
            return False

    try:
        wait_until(ready, STARTUP_SECONDS, "the moto server")
        config = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}
        assert moto_api("POST", "/moto-api/config", json.dumps(config)) == 201
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(10)
        log.close()


@pytest.fixture(scope="session")
def sfn(moto_endpoint: str) -> Any:
    return aws_client("stepfunctions", moto_endpoint)


@pytest.fixture(scope="session")
def s3(moto_endpoint: str) -> Any:
    return aws_client("s3", moto_endpoint)


@pytest.fixture
def output_bucket(s3: Any) -> str:
    """A new, empty output bucket in the moto server."""
    name = f"outputs-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def machines(moto_endpoint: str, sfn: Any) -> CallbackMachines:
    return CallbackMachines(moto_endpoint, sfn)


@pytest.fixture
def wrapper_for(moto_endpoint: str, machines: CallbackMachines, tmp_path: Path) -> Iterator[Callable[..., Wrapper]]:
    """wrapper_for(job_input, heartbeat_seconds=60, raw_input=None, pythonpath=()): start an
    execution paused in its callback Task and return the wrapper that runs its job, the input
    written to a file as the host side does. Wrappers still running at the end are killed."""
    runs: list[WrapperRun] = []

    def make(
        job_input: Any = None,
        heartbeat_seconds: int = 60,
        raw_input: bytes | None = None,
        pythonpath: tuple[Path, ...] = (),
    ) -> Wrapper:
        job_dir = tmp_path / f"job-{uuid.uuid4().hex[:8]}"
        job_dir.mkdir()
        input_path = job_dir / "input.json"
        input_path.write_bytes(raw_input if raw_input is not None else json.dumps(job_input or {}).encode())
        task = machines.start(heartbeat_seconds)
        return Wrapper(moto_endpoint, task, input_path, heartbeat_seconds, runs, pythonpath)

    yield make
    for run in runs:
        if run.process.poll() is None:
            run.kill()
