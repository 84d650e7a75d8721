"""run_container.sh against a real Docker engine (aws stays a stand-in): the flags work as meant.

Needs a reachable engine (DOCKER_HOST as set, else unix:///tmp/dockerd/docker.sock) and a local
image with python3: RUN_JOB_TEST_IMAGE, or the offline base image (run-job/base:bookworm, built by
scripts/offline_base_image.sh when missing, as tests/worker does). Nothing is pulled. Skipped
without an engine, unless RUN_JOB_REQUIRE_DOCKER=1. In the "docker" xdist group, with the other
tests that use the engine.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from host_harness import INPUT, ROOT, TOKEN_HASH, Host, job_record

pytestmark = [pytest.mark.docker, pytest.mark.xdist_group("docker")]

OFFLINE_BASE_IMAGE = "run-job/base:bookworm"
OFFLINE_BASE_SCRIPT = ROOT / "scripts" / "offline_base_image.sh"
IMAGE = os.environ.get("RUN_JOB_TEST_IMAGE", OFFLINE_BASE_IMAGE)
DOCKER_HOST = os.environ.get("DOCKER_HOST", "unix:///tmp/dockerd/docker.sock")
DOCKER_ENV = {**os.environ, "DOCKER_HOST": DOCKER_HOST}

# Runs inside the container: every check of the designed `docker run` flags, from the inside.
INSIDE = textwrap.dedent(
    """
    import hashlib, json, os
    problems = []
    def check(ok, what):
        if not ok:
            problems.append(what)
    env = os.environ
    check((os.getuid(), os.getgid()) == (1000, 1000), "uid/gid 1000")
    check(hashlib.sha256(env["TASK_TOKEN"].encode()).hexdigest()[:12] == env["EXPECTED_TOKEN_HASH"], "TASK_TOKEN")
    check(env["JOB_INPUT_PATH"] == "/job/input.json" and env["JOB_OUTPUT_DIR"] == "/job/out", "paths")
    check(env["HEARTBEAT_SECONDS"] == "120" and env["AWS_REGION"] == "eu-west-1", "settings")
    data = open(env["JOB_INPUT_PATH"], "rb").read()
    check(hashlib.sha256(data).hexdigest() == env["EXPECTED_INPUT_SHA"], "input bytes")
    for path in ("/job/input.json", "/etc/run-job-test"):
        try:
            open(path, "ab").close()
            problems.append("writable: " + path)
        except OSError:
            pass
    open("/job/out/result.json", "w").write("{}")
    open("/tmp/scratch", "w").write("tmpfs")
    status = open("/proc/self/status").read()
    check("CapEff:\\t0000000000000000" in status, "no capabilities")
    check("NoNewPrivs:\\t1" in status, "no new privileges")
    check(b"init" in open("/proc/1/cmdline", "rb").read(), "an init as pid 1")
    print(json.dumps({"problems": problems}))
    raise SystemExit(7 if problems else 0)
    """
)


def docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], env=DOCKER_ENV, capture_output=True, text=True, timeout=timeout, check=False
    )


def missing_engine() -> str | None:
    """Why the real-docker tests cannot run here, or None."""
    if shutil.which("docker") is None:
        return "no docker CLI on PATH"
    try:
        if docker("version", timeout=30).returncode == 0:
            return None
    except subprocess.TimeoutExpired:
        pass
    return f"no Docker engine answers at DOCKER_HOST={DOCKER_HOST}"


@pytest.fixture(scope="module")
def image() -> str:
    reason = missing_engine()
    if reason is not None:
        if os.environ.get("RUN_JOB_REQUIRE_DOCKER") == "1":
            pytest.fail(f"RUN_JOB_REQUIRE_DOCKER=1 but {reason}")
        pytest.skip(reason)
    if IMAGE == OFFLINE_BASE_IMAGE:  # idempotent: returns at once when the image exists
        base = subprocess.run(
            [str(OFFLINE_BASE_SCRIPT)], env=DOCKER_ENV, capture_output=True, text=True, timeout=900, check=False
        )
        assert base.returncode == 0, f"offline base image: {base.stderr[-3000:]}"
    assert docker("image", "inspect", IMAGE).returncode == 0, f"image {IMAGE} is not present"
    return IMAGE


@pytest.fixture
def docker_host(tmp_path: Path, image: str) -> Iterator[tuple[Host, str]]:
    host = Host(tmp_path, real_docker=True)
    job_id = "job-" + secrets.token_hex(16)
    yield host, job_id
    docker("rm", "--force", job_id)


def run(host: Host, job_id: str, **changes: object) -> tuple[int, str, str]:
    host.scenario["record"] = job_record(jobId=job_id, image=IMAGE, **changes)
    result = host.run(params={"JobId": job_id, "PullPolicy": "missing"})
    return result.rc, result.stdout, result.stderr


def test_the_designed_flags_hold_inside_the_container(docker_host: tuple[Host, str]) -> None:
    host, job_id = docker_host
    env = {"EXPECTED_TOKEN_HASH": TOKEN_HASH, "EXPECTED_INPUT_SHA": hashlib.sha256(INPUT.encode()).hexdigest()}

    rc, stdout, stderr = run(host, job_id, command=["python3", "-c", INSIDE], env=env, readOnlyRootFs=True)

    assert rc == 0, stderr
    sent = host.signal()
    assert sent["operation"] == "send-task-success", sent["payload"].get("cause")
    assert "pull skipped" in stdout
    assert host.job_dirs() == []


def test_exit_code_and_log_tail_reach_the_cause(docker_host: tuple[Host, str]) -> None:
    host, job_id = docker_host

    rc, _, stderr = run(host, job_id, command=["python3", "-c", "print('hello from the job'); raise SystemExit(3)"])

    assert rc == 0, stderr
    payload = host.signal()["payload"]
    assert payload["error"] == "Job.Failed"
    assert payload["cause"]["exitCode"] == 3
    assert "hello from the job" in payload["cause"]["logTail"]


def test_out_of_memory_is_detected(docker_host: tuple[Host, str]) -> None:
    host, job_id = docker_host

    rc, stdout, stderr = run(
        host, job_id, memoryMiB=32, command=["python3", "-c", "b = bytearray(512 * 1024 * 1024); print(len(b))"]
    )

    assert rc == 0, stderr
    assert "oom=true" in stdout
    payload = host.signal()["payload"]
    assert payload["error"] == "Job.OutOfMemory"
    assert payload["cause"]["exitCode"] == 137


def test_sigterm_stops_the_real_container(docker_host: tuple[Host, str]) -> None:
    host, job_id = docker_host
    host.scenario["record"] = job_record(jobId=job_id, image=IMAGE, command=["sleep", "120"], stopGraceSeconds=2)
    process = host.start(params={"JobId": job_id, "PullPolicy": "missing"})

    result = host.interrupt(process, lambda: any(argv[:2] == ["docker", "wait"] for argv in host.argvs()))

    assert result.rc == 143, result.stderr
    payload = host.signal()["payload"]
    assert payload["error"] == "Job.Cancelled"
    assert payload["cause"]["exitCode"] == 143
    assert ["docker", "stop", "--time", "2", job_id] in host.argvs()
    assert docker("inspect", job_id).returncode != 0  # removed
