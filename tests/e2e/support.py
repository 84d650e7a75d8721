"""Helpers of the end-to-end tests."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from local_stack.client import LocalStackClient, wait_until
from local_stack.images import WORKER_TAG


def containers(job_id: str) -> list[str]:
    """Containers (running or not) labelled with the job id."""
    listed = subprocess.run(
        ["docker", "ps", "--all", "--quiet", "--filter", f"label=run-job.job-id={job_id}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return listed.stdout.split()


def job_status(stack: LocalStackClient, job_id: str) -> str:
    return str(stack.job(job_id)["status"]["S"])


def put_job_type(stack: LocalStackClient, name: str, entry: dict[str, Any]) -> None:
    """Add or swap a catalog entry, as an operator would."""
    stack.client("ssm").put_parameter(
        Name=stack.state["catalog_path"] + name, Type="String", Value=json.dumps(entry), Overwrite=True
    )


def tag_image(source: str, target: str) -> None:
    subprocess.run(["docker", "tag", source, target], check=True)


def derived_image(tag: str, dockerfile: str, workdir: Path) -> str:
    """Build a small image on top of the worker image (another image for a job type)."""
    (workdir / "Dockerfile").write_text(dockerfile.replace("{WORKER}", WORKER_TAG))
    subprocess.run(
        ["docker", "build", "--quiet", "--network", "none", "--tag", tag, str(workdir)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return tag


def running_job(stack: LocalStackClient, execution_arn: str, timeout: float = 60) -> dict[str, Any]:
    """The execution's job, once its container runs."""
    found: list[dict[str, Any]] = []

    def started() -> bool:
        ids = stack.job_ids(execution_arn)
        if ids and containers(ids[-1]):
            found.append(stack.job(ids[-1]))
            return True
        return False

    assert wait_until(started, timeout), "the job's container never started"
    return found[-1]
