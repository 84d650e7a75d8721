"""SIGTERM/SIGINT to run_container.sh (SSM cancel, an operator): stop the container, tell, clean up."""

from __future__ import annotations

import signal
import time

import pytest
from host_harness import JOB_ID, Host, job_record


@pytest.mark.parametrize(("sig", "rc", "name"), [(signal.SIGTERM, 143, "TERM"), (signal.SIGINT, 130, "INT")])
def test_signal_while_the_container_runs_stops_it_with_the_grace(host: Host, sig: int, rc: int, name: str) -> None:
    host.scenario["record"] = job_record(stopGraceSeconds=7)
    host.scenario["container"].update(wait_seconds=60, logs="working\n")

    result = host.interrupt(host.start(), "wait", sig)

    assert result.rc == rc
    assert f"run-job: received SIG{name}: stopping the job" in result.stdout
    assert [(stop["name"], stop["grace"]) for stop in host.events("stop")] == [(JOB_ID, 7)]
    actions = [event["action"] for event in host.events()]
    assert actions.index("stop") < actions.index("rm")
    assert [(rm["name"], rm["existed"]) for rm in host.events("rm")] == [(JOB_ID, True)]
    payload = host.signal()["payload"]
    assert payload["error"] == "Job.Cancelled"
    assert payload["cause"]["exitCode"] == 143  # the stop's code: it did not wait for the container's own end (0)
    assert payload["cause"]["logTail"] == "working\n"
    assert f"(SIG{name})" in payload["cause"]["message"]
    assert host.job_dirs() == []


def test_sigterm_during_the_pull_starts_no_container(host: Host) -> None:
    host.scenario["pull"]["seconds"] = 30
    started = time.monotonic()

    result = host.interrupt(host.start(), "pull")

    assert result.rc == 143
    assert time.monotonic() - started < 15  # the pull was abandoned, not awaited
    assert host.events("run") == []
    assert host.events("stop") == []
    payload = host.signal()["payload"]
    assert payload["error"] == "Job.Cancelled"
    assert "before the container started" in payload["cause"]["message"]
    assert host.job_dirs() == []


def test_sigterm_after_the_wrapper_signalled_is_quiet(host: Host) -> None:
    host.scenario["container"]["wait_seconds"] = 30
    host.scenario["signal_answers"] = ["TaskTimedOut"]

    result = host.interrupt(host.start(), "wait")

    assert result.rc == 143
    assert "task already closed (TaskTimedOut)" in result.stdout
    assert host.job_dirs() == []
