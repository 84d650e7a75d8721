"""The worker image, built on the offline base (Debian's python3 3.11 and boto3 1.26), run the
way the host side runs it (docs/design.md, host side step 6) against moto on loopback."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from wrapper_harness import WORKER_IMAGE_DIR, CallbackMachines, Wrapper, wait_until

pytestmark = [pytest.mark.docker, pytest.mark.xdist_group("docker")]

BASE_IMAGE = "run-job/base:bookworm"
WORKER_IMAGE = "run-job/worker:dev"
OFFLINE_BASE_SCRIPT = WORKER_IMAGE_DIR.parent / "scripts" / "offline_base_image.sh"


def docker(*args: str, timeout: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, env=env, check=False)


def missing_engine() -> str | None:
    if shutil.which("docker") is None:
        return "no docker CLI on PATH"
    try:
        if docker("info", timeout=30).returncode == 0:
            return None
    except subprocess.TimeoutExpired:
        pass
    return f"no Docker engine answers at DOCKER_HOST={os.environ.get('DOCKER_HOST', '(default)')}"


@pytest.fixture(scope="module")
def worker_image() -> str:
    reason = missing_engine()
    if reason is not None:
        if os.environ.get("RUN_JOB_REQUIRE_DOCKER") == "1":
            pytest.fail(f"RUN_JOB_REQUIRE_DOCKER=1 but {reason}")
        pytest.skip(reason)
    base = subprocess.run([str(OFFLINE_BASE_SCRIPT)], capture_output=True, text=True, timeout=900, check=False)
    assert base.returncode == 0, f"offline base image: {base.stderr[-3000:]}"
    build = docker(
        "build", "--network", "host", "--build-arg", f"BASE_IMAGE={BASE_IMAGE}", "-t", WORKER_IMAGE,
        str(WORKER_IMAGE_DIR), timeout=900,
    )  # fmt: skip
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    return WORKER_IMAGE


@pytest.fixture
def container(worker_image: str) -> Iterator[Callable[..., tuple[str, list[str]]]]:
    """container(wrapper, *docker_options) -> (name, the `docker run` argv of the host side):
    the token and the other values passed by name only (`--env NAME`), never on the argv."""
    names: list[str] = []

    def argv(wrapper: Wrapper, *options: str) -> tuple[str, list[str]]:
        names.append(f"worker-test-{uuid.uuid4().hex[:12]}")
        environment = [arg for name in wrapper.env() if name not in ("PATH", "PYTHONPATH") for arg in ("--env", name)]
        return names[-1], [
            "run", "--detach", "--name", names[-1], "--init", "--user", "1000:1000", "--network", "host",
            "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--pids-limit", "64",
            "--read-only", "--tmpfs", "/tmp", "--volume", f"{wrapper.input_path}:/job/input.json:ro",
            *environment, "--env", "JOB_INPUT_PATH=/job/input.json", *options, worker_image,
        ]  # fmt: skip

    yield argv
    for name in names:
        docker("rm", "--force", name)


def start(argv: list[str], wrapper: Wrapper) -> None:
    # The values reach `docker run --env NAME` through the docker CLI's own environment.
    started = docker(*argv, "--job", "examples.checksum:run", env={**os.environ, **wrapper.env()})
    assert started.returncode == 0, started.stderr


def run_to_end(name: str, argv: list[str], wrapper: Wrapper) -> int:
    start(argv, wrapper)
    return int(docker("wait", name).stdout)


def logs_of(name: str) -> str:
    logs = docker("logs", name)
    return logs.stdout + logs.stderr


def test_image_runs_as_uid_1000(worker_image: str) -> None:
    assert docker("run", "--rm", "--network", "none", "--entrypoint", "id", worker_image).stdout.split()[:2] == [
        "uid=1000(worker)",
        "gid=1000(worker)",
    ]


def test_container_signals_success_with_the_input_byte_for_byte(
    wrapper_for: Callable[..., Wrapper], machines: CallbackMachines, container: Callable[..., tuple[str, list[str]]]
) -> None:
    # Running past HeartbeatSeconds: Debian's boto3 1.26 heartbeats as well.
    raw = json.dumps({"text": "ünïcödé " * 25_000, "sleepSeconds": 4}, ensure_ascii=False).encode()
    wrapper = wrapper_for(raw_input=raw, heartbeat_seconds=2)

    name, argv = container(wrapper)

    assert wrapper.task.token not in " ".join(argv)
    assert run_to_end(name, argv, wrapper) == 0
    assert wrapper.task.token not in logs_of(name)
    output = json.loads(machines.finished(wrapper.task)["output"])
    assert output["file"] == {"sha256": hashlib.sha256(raw).hexdigest(), "bytes": len(raw)}


def test_container_stores_a_large_output_with_debians_boto3(
    wrapper_for: Callable[..., Wrapper],
    machines: CallbackMachines,
    container: Callable[..., tuple[str, list[str]]],
    s3: Any,
    output_bucket: str,
) -> None:
    # Debian's botocore 1.29 sends the SHA-256 checksum and the encryption header too.
    wrapper = wrapper_for({"outputBytes": 300 * 1024})
    name, argv = container(wrapper, "--env", f"OUTPUT_BUCKET={output_bucket}")

    assert run_to_end(name, argv, wrapper) == 0

    pointer = json.loads(machines.finished(wrapper.task)["output"])
    stored = s3.head_object(Bucket=output_bucket, Key=pointer["outputLocation"]["key"], ChecksumMode="ENABLED")
    body = s3.get_object(Bucket=output_bucket, Key=pointer["outputLocation"]["key"])["Body"].read()
    assert (pointer["bytes"], pointer["sha256"]) == (len(body), hashlib.sha256(body).hexdigest())
    assert stored["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(body).digest()).decode()
    assert stored["ServerSideEncryption"] == "AES256"
    assert len(json.loads(body)["filler"]) == 300 * 1024


def test_out_of_memory_is_left_to_the_host_guard(
    wrapper_for: Callable[..., Wrapper],
    machines: CallbackMachines,
    container: Callable[..., tuple[str, list[str]]],
    sfn: Any,
) -> None:
    wrapper = wrapper_for({"allocateMiB": 512})
    name, argv = container(wrapper, "--memory", "96m", "--memory-swap", "96m")

    assert run_to_end(name, argv, wrapper) == 137
    assert docker("inspect", "--format", "{{.State.OOMKilled}}", name).stdout.strip() == "true"
    assert machines.status(wrapper.task) == "RUNNING"  # the host guard's to signal, as Job.OutOfMemory
    sfn.stop_execution(executionArn=wrapper.task.execution_arn)


def test_docker_stop_stops_the_job_and_leaves_the_signal_to_whoever_stopped_it(
    wrapper_for: Callable[..., Wrapper],
    machines: CallbackMachines,
    container: Callable[..., tuple[str, list[str]]],
    sfn: Any,
) -> None:
    wrapper = wrapper_for({"sleepSeconds": 120})
    name, argv = container(wrapper)
    start(argv, wrapper)
    wait_until(lambda: "job started" in logs_of(name), 30, "the job to start")

    assert docker("stop", "--time", "20", name, timeout=60).returncode == 0

    # 143, not 137: the SIGTERM reached the wrapper through --init, and it stopped the job.
    assert docker("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip() == "143"
    # The host guard (Job.Cancelled) or the reaper (Job.HostLost) signals, not the wrapper.
    assert machines.status(wrapper.task) == "RUNNING"
    sfn.stop_execution(executionArn=wrapper.task.execution_arn)
