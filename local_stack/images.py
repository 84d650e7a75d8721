"""The container engine and the worker image for the local stack.

The worker image is built from worker_image/ and tagged with every image name the job type
catalog holds (the template's ECR URIs), so the catalog runs unchanged and the host side
finds the images without a registry. When no base image can be pulled, one is built
offline (scripts/offline_base_image.sh) and passed as the BASE_IMAGE build argument.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterable

from local_stack.template import ROOT

WORKER_TAG = "run-job/worker:local"
OFFLINE_BASE = "run-job/base:bookworm"
Say = Callable[[str], None]


def engine_available() -> bool:
    """True when a Docker-compatible engine answers (DOCKER_HOST honoured)."""
    try:
        probe = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def image_present(image: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode == 0


def base_image(say: Say) -> str:
    """RUN_JOB_BASE_IMAGE if set; else the Dockerfile's default if present; else an offline build."""
    chosen = os.environ.get("RUN_JOB_BASE_IMAGE")
    if chosen:
        return chosen
    for line in (ROOT / "worker_image" / "Dockerfile").read_text().splitlines():
        if line.startswith("ARG BASE_IMAGE="):
            default = line.split("=", 1)[1].strip()
            if image_present(default):
                return default
    if not image_present(OFFLINE_BASE):
        say(f"no base image can be pulled here: building {OFFLINE_BASE} offline with debootstrap (about a minute)")
        subprocess.run(["bash", str(ROOT / "scripts" / "offline_base_image.sh")], check=True)
    return OFFLINE_BASE


def build_worker_image(say: Say) -> None:
    base = base_image(say)
    say(f"building the worker image from worker_image/ on {base}")
    subprocess.run(
        [
            "docker",
            "build",
            "--quiet",
            "--network",
            "host",
            "--build-arg",
            f"BASE_IMAGE={base}",
            "--tag",
            WORKER_TAG,
            str(ROOT / "worker_image"),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def tag_catalog_images(images: Iterable[str]) -> None:
    for image in sorted(set(images)):
        subprocess.run(["docker", "tag", WORKER_TAG, image], check=True)


def catalog_images(catalog_values: Iterable[str]) -> list[str]:
    return [json.loads(value)["image"] for value in catalog_values]
