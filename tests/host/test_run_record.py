"""run_container.sh re-checks the job record: a bad one is refused (Job.Failed), hostile strings stay inert."""

from __future__ import annotations

from typing import Any

import pytest
from host_harness import IMAGE, JOB_ID, Host, Raw, job_record

REFUSED_RECORDS = [
    ({"image": "--privileged"}, "image must be an image reference"),
    ({"image": "-v/:/host"}, "image must be an image reference"),
    ({"image": "worker:1 --privileged"}, "image must be an image reference"),
    ({"image": "$(reboot)"}, "image must be an image reference"),
    ({"image": "`reboot`"}, "image must be an image reference"),
    ({"image": "worker:1\n--privileged"}, "image must be an image reference"),
    ({"image": ""}, "image must be an image reference"),
    ({"image": None}, "image is missing"),
    ({"image": Raw({"N": "1"})}, "image must be of DynamoDB type S"),
    ({"env": {"log_level": "x"}}, "must match ^[A-Z_][A-Z0-9_]*$"),
    ({"env": {"A-B": "x"}}, "must match"),
    ({"env": {"TASK_TOKEN": "forged"}}, "is reserved"),
    ({"env": {"JOB_ID": "x"}}, "is reserved"),
    ({"env": {"AWS_ENDPOINT_URL": "http://evil.example"}}, "is reserved"),
    ({"env": {"DOCKER_HOST": "tcp://evil.example:2375"}}, "is reserved"),
    ({"env": {"LD_PRELOAD": "/tmp/evil.so"}}, "is reserved"),
    ({"env": Raw({"M": {"NAME": {"N": "1"}}})}, "must be of DynamoDB type S"),
    ({"command": Raw({"L": [{"S": "ok"}, {"N": "1"}]})}, "command[1] must be of DynamoDB type S"),
    ({"command": Raw({"S": "python3 -m job"})}, "command must be of DynamoDB type L"),
    ({"cpu": Raw({"N": "abc"})}, "cpu must be a number"),
    ({"cpu": 0}, "cpu must be a number"),
    ({"cpu": 4096}, "cpu must be a number"),
    ({"cpu": Raw({"N": "NaN"})}, "cpu must be a number"),
    ({"memoryMiB": 1.5}, "memoryMiB must be an integer"),
    ({"memoryMiB": None}, "memoryMiB is missing"),
    ({"pidsLimit": 0}, "pidsLimit must be an integer"),
    ({"heartbeatSeconds": None}, "heartbeatSeconds is missing"),
    ({"stopGraceSeconds": -1}, "stopGraceSeconds must be an integer"),
    ({"readOnlyRootFs": Raw({"S": "true"})}, "readOnlyRootFs must be of DynamoDB type BOOL"),
    ({"inputSha256": "0" * 64}, "input.json does not match the job record's inputSha256"),
    ({"inputSha256": "XYZ"}, "inputSha256 must be 64 lowercase hex digits"),
    ({"input": None}, "input is missing"),
    ({"jobId": "job-" + "f" * 32}, "jobId does not match the command's JobId"),
]


@pytest.mark.parametrize(("changes", "message"), REFUSED_RECORDS)
def test_a_bad_record_is_refused_with_job_failed(host: Host, changes: dict[str, Any], message: str) -> None:
    host.scenario["record"] = job_record(**changes)

    result = host.run()

    assert result.rc == 0, result.stderr
    assert message in result.stderr
    payload = host.signal()["payload"]
    assert payload["error"] == "Job.Failed"
    assert payload["cause"]["jobId"] == JOB_ID
    assert payload["cause"]["message"].startswith("the host side refused the job: ")
    assert message in payload["cause"]["message"]
    assert [event["action"] for event in host.events() if event["prog"] == "docker"] == []
    assert host.job_dirs() == []


@pytest.mark.parametrize("token", [None, Raw({"N": "1"}), ""])
def test_a_record_without_a_usable_token_stops_the_host_side(host: Host, token: Any) -> None:
    host.scenario["record"] = job_record(token=token)

    result = host.run()

    assert result.rc == 1
    assert "has no usable token" in result.stderr
    assert host.signals() == []
    assert [event for event in host.events() if event["prog"] == "docker"] == []
    assert host.job_dirs() == []


HOSTILE = [
    "$(mkdir {marker})",
    "`mkdir {marker}`",
    "'; mkdir {marker}; '",
    '"; mkdir {marker}; "',
    "a\nb\n mkdir {marker}",
    "--privileged",
    "-v/:/host",
    "${{HOME}} * ? [a] ~",
    "",
    " leading and trailing ",
    "ünïcödé 🙂",
    "\\ \t \x1b[31m",
]


def test_hostile_command_arguments_are_single_inert_argv_elements(host: Host) -> None:
    marker = host.dir / "pwned"
    command = [element.format(marker=marker) for element in HOSTILE]
    host.scenario["record"] = job_record(command=command)

    assert host.run().rc == 0

    run = host.docker_run()
    assert run["image"] == IMAGE
    assert run["command"] == command
    assert not marker.exists()


def test_hostile_env_values_reach_docker_verbatim(host: Host) -> None:
    marker = host.dir / "pwned"
    env = {f"VALUE_{index}": element.format(marker=marker) for index, element in enumerate(HOSTILE)}
    host.scenario["record"] = job_record(env=env)

    assert host.run().rc == 0

    run = host.docker_run()
    assert {name: run["env"][name] for name in env} == env
    assert not marker.exists()


def test_an_empty_command_runs_the_image_default(host: Host) -> None:
    host.scenario["record"] = job_record(command=[])

    assert host.run().rc == 0
    run = host.docker_run()
    assert (run["image"], run["command"]) == (IMAGE, [])


@pytest.mark.parametrize(("cpu", "shown"), [(Raw({"N": "1.0"}), "1"), (Raw({"N": "0.25"}), "0.25"), (16, "16")])
def test_cpu_is_passed_as_a_plain_decimal(host: Host, cpu: Any, shown: str) -> None:
    host.scenario["record"] = job_record(cpu=cpu)

    assert host.run().rc == 0
    assert ["--cpus", shown] in host.docker_run()["options"]


def test_optional_attributes_have_defaults(host: Host) -> None:
    host.scenario["record"] = job_record(command=None, env=None, readOnlyRootFs=None, stopGraceSeconds=None)

    assert host.run().rc == 0
    run = host.docker_run()
    assert run["command"] == []
    assert ["--read-only"] not in run["options"]
