"""After each job, run_container.sh prunes unused images when Docker's disk is full enough
(PruneDiskPercent, PruneAgeHours), so long-lived worker instances do not fill their disks.
Upkeep never changes the job's outcome and never runs when the host side is stopped."""

from __future__ import annotations

import signal

from host_harness import Host

# Any disk in use is at least 1% full, and none here is 100% full: deterministic thresholds.
ALWAYS, NEVER = "1", "100"


def test_off_does_no_upkeep(host: Host) -> None:
    assert host.run(params={"PruneDiskPercent": "off"}).rc == 0
    assert not host.events("info")
    assert not host.events("prune")


def test_a_full_enough_disk_prunes_unused_images_older_than_the_age(host: Host) -> None:
    result = host.run(params={"PruneDiskPercent": ALWAYS, "PruneAgeHours": "48"})

    assert result.rc == 0
    assert [prune["filter"] for prune in host.events("prune")] == ["until=48h"]
    assert "pruning unused images older than 48h" in result.stdout
    assert "Total reclaimed space: 1.5GB" in result.stdout
    actions = [event["action"] for event in host.events()]
    assert actions.index("signal") < actions.index("rm") < actions.index("prune")  # outcome first, container gone


def test_below_the_threshold_nothing_is_pruned(host: Host) -> None:
    assert host.run(params={"PruneDiskPercent": NEVER}).rc == 0
    assert host.events("info")
    assert not host.events("prune")


def test_upkeep_follows_a_failed_job_too(host: Host) -> None:
    """A pull that failed for want of space is when a prune helps most."""
    host.scenario["pull"] = {"rc": 1, "output": "no space left on device\n"}

    assert host.run(params={"PruneDiskPercent": ALWAYS}).rc == 0

    assert host.signal()["payload"]["error"] == "Job.ImagePullFailed"
    assert len(host.events("prune")) == 1


def test_a_failed_prune_changes_nothing(host: Host) -> None:
    host.scenario["prune"] = {"rc": 1, "output": "Error: a prune operation is already running\n"}

    result = host.run(params={"PruneDiskPercent": ALWAYS})

    assert result.rc == 0
    assert host.signal()["operation"] == "send-task-success"
    assert "the prune failed" in result.stdout


def test_an_unknown_docker_root_prunes_nothing(host: Host) -> None:
    host.scenario["docker_root"] = "/nonexistent/docker"

    result = host.run(params={"PruneDiskPercent": ALWAYS})

    assert result.rc == 0
    assert "cannot tell how full Docker's disk is" in result.stdout
    assert not host.events("prune")


def test_a_stopped_host_side_leaves_at_once(host: Host) -> None:
    host.scenario["container"].update(wait_seconds=30)

    result = host.interrupt(host.start(params={"PruneDiskPercent": ALWAYS}), "wait", signal.SIGTERM)

    assert result.rc == 143
    assert not host.events("prune")
