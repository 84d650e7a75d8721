"""run_container.sh refuses every parameter that does not match its pattern: exit 2, nothing run."""

from __future__ import annotations

import pytest
from host_harness import JOB_ID, PARAMS, Host

BAD_PARAMETERS = [
    *[(name, None) for name in PARAMS],  # unset
    *[(name, "") for name in PARAMS],
    ("JobId", "job-0123"),
    ("JobId", "JOB-" + "0" * 32),
    ("JobId", "job-" + "A" * 32),
    ("JobId", JOB_ID + "\n"),
    ("JobId", JOB_ID + " "),
    ("JobId", "job-" + "ａ" * 32),  # fullwidth letters: no locale may fold them into [a-f]
    ("JobId", "job-$(reboot)" + "0" * 23),
    ("JobId", "../../../etc/passwd"),
    ("JobTable", "ab"),
    ("JobTable", "jobs table"),
    ("JobTable", "jobs;id"),
    ("JobTable", "t" * 256),
    ("JobTable", "jobs\n"),
    ("Region", "eu-west"),
    ("Region", "EU-WEST-1"),
    ("Region", "eu-west-12"),
    ("Region", "eu-west-1; id"),
    ("Region", "eu-wést-1"),
    ("PullPolicy", "never"),
    ("PullPolicy", "Always"),
    ("PullPolicy", "always\n"),
    ("Network", "container:other"),
    ("Network", "bridge host"),
    ("LogDriver", "syslog"),
    ("LogDriver", "none"),
    ("LogGroup", "group name"),
    ("LogGroup", "g$(id)"),
    ("LogGroup", "g" * 513),
    ("PruneDiskPercent", "0"),
    ("PruneDiskPercent", "101"),
    ("PruneDiskPercent", "80%"),
    ("PruneDiskPercent", "OFF"),
    ("PruneDiskPercent", "080"),
    ("PruneAgeHours", "-1"),
    ("PruneAgeHours", "72h"),
    ("PruneAgeHours", "123456"),
    ("PruneAgeHours", "1e3"),
]


@pytest.mark.parametrize(("name", "value"), BAD_PARAMETERS)
def test_bad_parameter_is_refused_before_anything_runs(host: Host, name: str, value: str | None) -> None:
    result = host.run(params={name: value})

    assert result.rc == 2
    assert f"parameter {name} " in result.stderr
    assert host.argvs() == []  # not one process: no docker, no aws, no python3, no mkdir
    assert not host.root.joinpath("jobs").exists()


@pytest.mark.parametrize("root", ["relative/run-job", "/var/lib/run:job", "/tmp/run job", "/tmp/$(id)", ""])
def test_bad_run_job_root_is_refused(host: Host, root: str) -> None:
    result = host.run(env={"RUN_JOB_ROOT": root} if root else {"RUN_JOB_ROOT": "\n"})

    assert result.rc == 2
    assert "RUN_JOB_ROOT" in result.stderr
    assert host.argvs() == []


def test_every_bad_parameter_is_reported_at_once(host: Host) -> None:
    result = host.run(params=dict.fromkeys(PARAMS, "bad value"))

    assert result.rc == 2
    for name in PARAMS:
        assert f"parameter {name} must match" in result.stderr
    assert host.argvs() == []


def test_a_pasted_parameter_is_not_executed(host: Host) -> None:
    """An old agent pastes values instead of exporting them; a value is still only ever data."""
    marker = host.dir / "pwned"
    result = host.run(params={"LogGroup": f"$(mkdir {marker})", "JobTable": f"`mkdir {marker}`"})

    assert result.rc == 2
    assert not marker.exists()
