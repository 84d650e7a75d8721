"""stop_container.sh: stop (with the grace) and remove a job's container; absent is success."""

from __future__ import annotations

import pytest
from host_harness import JOB_ID, Host

SCRIPT = "stop_container.sh"
LABELS = {"run-job.job-id": JOB_ID}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("JobId", None),
        ("JobId", ""),
        ("JobId", "job-123"),
        ("JobId", JOB_ID + "\n"),
        ("JobId", "$(reboot)"),
        ("JobId", "--all"),
        ("GraceSeconds", None),
        ("GraceSeconds", ""),
        ("GraceSeconds", "10000"),
        ("GraceSeconds", "-1"),
        ("GraceSeconds", "1.5"),
        ("GraceSeconds", "10 --signal KILL"),
    ],
)
def test_bad_parameter_is_refused_before_anything_runs(host: Host, name: str, value: str | None) -> None:
    result = host.run(SCRIPT, params={"GraceSeconds": "30", name: value})

    assert result.rc == 2
    assert f"parameter {name} " in result.stderr
    assert host.argvs() == []


@pytest.mark.parametrize(("grace", "seconds"), [("30", 30), ("0", 0), ("0010", 10), ("9999", 9999)])
def test_stops_with_the_grace_then_removes(host: Host, grace: str, seconds: int) -> None:
    host.add_container(JOB_ID, LABELS)

    result = host.run(SCRIPT, params={"GraceSeconds": grace})

    assert result.rc == 0, result.stderr
    assert [event["action"] for event in host.events()] == ["ps", "stop", "rm"]
    assert host.event("ps")["filter"] == f"label=run-job.job-id={JOB_ID}"
    assert (host.event("stop")["name"], host.event("stop")["grace"]) == (JOB_ID, seconds)
    assert host.event("rm")["name"] == JOB_ID
    assert not host.has_container(JOB_ID)
    assert f"stop-job: stopped container {JOB_ID}" in result.stdout


def test_no_container_is_success(host: Host) -> None:
    result = host.run(SCRIPT, params={"GraceSeconds": "30"})

    assert result.rc == 0
    assert "nothing to stop" in result.stdout
    assert [event["action"] for event in host.events()] == ["ps"]


def test_a_warning_from_docker_is_not_a_container(host: Host) -> None:
    host.scenario["ps_warning"] = True

    result = host.run(SCRIPT, params={"GraceSeconds": "30"})

    assert result.rc == 0
    assert "nothing to stop" in result.stdout
    assert [event["action"] for event in host.events()] == ["ps"]


def test_a_container_without_our_label_is_left_alone(host: Host) -> None:
    host.add_container(JOB_ID, {"run-job.job-id": "job-" + "f" * 32})

    result = host.run(SCRIPT, params={"GraceSeconds": "30"})

    assert result.rc == 0
    assert host.has_container(JOB_ID)
    assert [event["action"] for event in host.events()] == ["ps"]


def test_is_idempotent(host: Host) -> None:
    host.add_container(JOB_ID, LABELS)

    first = host.run(SCRIPT, params={"GraceSeconds": "5"})
    second = host.run(SCRIPT, params={"GraceSeconds": "5"})

    assert (first.rc, second.rc) == (0, 0)
    assert [event["action"] for event in host.events()] == ["ps", "stop", "rm", "ps"]


def test_a_container_gone_meanwhile_is_success(host: Host) -> None:
    host.add_container(JOB_ID, LABELS)
    host.scenario["container"]["vanish_on_stop"] = True

    result = host.run(SCRIPT, params={"GraceSeconds": "5"})

    assert result.rc == 0
    assert "gone already" in result.stdout


def test_docker_failure_is_exit_1(host: Host) -> None:
    host.scenario["ps_fails"] = True

    result = host.run(SCRIPT, params={"GraceSeconds": "5"})

    assert result.rc == 1
    assert "docker ps failed" in result.stderr
