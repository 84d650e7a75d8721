"""The task token never appears on any process's command line, nor in the script's output."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest
from host_harness import JOB_ID, TOKEN, TOKEN_HASH, Host, job_record


def success(scenario: dict[str, Any]) -> None:
    scenario["container"]["exit_code"] = 0


def failure(scenario: dict[str, Any]) -> None:
    scenario["container"].update(exit_code=3, logs=f"leaking {TOKEN}\n")


def out_of_memory(scenario: dict[str, Any]) -> None:
    scenario["container"].update(exit_code=137, oom=True)


def pull_fails(scenario: dict[str, Any]) -> None:
    scenario["pull"] = {"rc": 1, "output": "denied\n"}


def ecr_image(scenario: dict[str, Any]) -> None:
    scenario["record"] = job_record(image="123456789012.dkr.ecr.eu-west-1.amazonaws.com/worker:1")


def refused(scenario: dict[str, Any]) -> None:
    scenario["record"] = job_record(inputSha256="0" * 64)


def docker_run_fails(scenario: dict[str, Any]) -> None:
    scenario["run"] = {"rc": 125, "stderr": "docker: no\n"}


def closed(scenario: dict[str, Any]) -> None:
    scenario["signal_answers"] = ["TaskTimedOut"]


def undeliverable(scenario: dict[str, Any]) -> None:
    scenario["signal_answers"] = [f"Throttling {TOKEN}"]  # even an error that echoes the token


PATHS = [success, failure, out_of_memory, pull_fails, ecr_image, refused, docker_run_fails, closed, undeliverable]


@pytest.mark.parametrize("change", PATHS)
def test_token_is_on_no_argv_and_never_printed(host: Host, change: Callable[[dict[str, Any]], None]) -> None:
    change(host.scenario)

    result = host.run()

    argvs = host.argvs()
    assert any(argv[0] == "python3" for argv in argvs)  # the audit covers python3 too
    assert {argv[0] for argv in argvs} <= {"python3", "mkdir", "rm", "sleep", "docker", "aws"}
    for argv in argvs:
        for element in argv:
            assert TOKEN not in element, argv[:3]
            assert TOKEN[:40] not in element, argv[:3]
    assert TOKEN[:40] not in result.stdout
    assert TOKEN[:40] not in result.stderr
    for sent in host.signals():  # the token itself goes where it must: the signal file's taskToken
        assert sent["payload"]["taskToken"] == TOKEN


def test_logs_show_the_token_hash(host: Host) -> None:
    result = host.run()

    assert f"token hash {TOKEN_HASH}" in result.stdout


def test_process_table_never_shows_the_token(host: Host) -> None:
    """Sample the real process table (`ps -eww -o args`) while a run waits on a slow container."""
    host.scenario["container"]["wait_seconds"] = 2.5
    host.scenario["pull"]["seconds"] = 1.0
    process = host.start()
    samples: list[str] = []
    deadline = time.monotonic() + 30
    while process.poll() is None and time.monotonic() < deadline:
        table = subprocess.run(["ps", "-eww", "-o", "args="], capture_output=True, text=True, check=True).stdout
        samples.extend(table.splitlines())
        time.sleep(0.02)
    result = host.finish(process)

    assert result.rc == 0
    assert any(line.startswith("docker pull") or " pull " in line for line in samples)
    assert any(f"wait {JOB_ID}" in line for line in samples)  # the sampling did see the run
    assert not [line for line in samples if TOKEN[:40] in line]
