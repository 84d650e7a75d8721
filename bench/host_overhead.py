"""What the host side and the callback wrapper add to a bare `docker run` of the same job.

Alternating, one job at a time: a job through the whole local stack (dispatch, the local agent
running the run-container document's script, the container with the callback wrapper) and
the same image and code through bench/bare_run.sh (`docker run` and nothing else). The job
prints its own first and last moments; the engine's events give each container's creation;
moto's history gives the moment the task was signalled. All on this machine's clock.

  docker create → job's first line: the container starting, plus (ours) `--init`, the limits
      and the wrapper starting before it starts the job;
  job's last line → task signalled: (ours) the wrapper seeing the job end and calling
      SendTaskSuccess; (bare) `docker run` returning the output to its caller.

The host side's work before `docker run` (reading the job record with the aws CLI, checking the
input, looking up the image) is reported apart: it is not in the target's two intervals. So is
what the wrapper does before it starts the job, timed inside the image (import boto3, one client).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
import uuid
from typing import Any

from bench import fixtures
from bench.common import BENCH_DIR, DockerEvents, epoch, local_stack, median, millis, table
from local_stack.client import LocalStackClient

TARGET_ADDED_SECONDS = 0.5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--samples", type=int, default=8, help="jobs per variant (after one warm-up each)")


def _ours(stack: LocalStackClient, events: DockerEvents) -> dict[str, float]:
    arn = stack.start(fixtures.callback_request(0), name=f"bench-host-{uuid.uuid4().hex[:12]}")
    stack.wait(arn, timeout=120)
    figures = fixtures.execution_figures(stack, arn)
    record = stack.job(stack.job_ids(arn)[0])
    job_id = record["jobId"]["S"]
    invocation = stack.client("ssm").get_command_invocation(
        CommandId=record["commandId"]["S"], InstanceId=record["instanceId"]["S"]
    )
    command_start = epoch(invocation["ExecutionStartDateTime"])
    created = events.wait_for(job_id, "create")
    return {
        "createToFirstLine": figures.job_start - created,
        "lastLineToSignalled": figures.task_succeeded - figures.job_end,
        "lastLineToExecutionEnd": figures.ended - figures.job_end,
        "hostSidePreparation": created - command_start,
        "executionStartToCommandStart": command_start - figures.started,
        "containerExitAfterSignal": events.wait_for(job_id, "die") - figures.task_succeeded,
    }


def _bare(image: str, events: DockerEvents) -> dict[str, float]:
    run_id = f"bench-bare-{uuid.uuid4().hex[:12]}"
    env = {**os.environ, **fixtures.bare_run_environment(image, 0, run_id)}
    launched = time.time()
    done = subprocess.run(["bash", str(BENCH_DIR / "bare_run.sh")], env=env, capture_output=True, text=True, check=True)
    returned = time.time()
    output = json.loads(done.stdout.strip().splitlines()[-1])
    created = events.wait_for(run_id, "create")
    return {
        "createToFirstLine": output["jobStart"] - created,
        "lastLineToSignalled": returned - output["jobEnd"],
        "lastLineToContainerExit": events.wait_for(run_id, "die") - output["jobEnd"],
        "cliToCreate": created - launched,
    }


# What the wrapper does before it starts the job, timed inside the image (python3 -c).
WRAPPER_STARTUP_CODE = (
    "import json, time\n"
    "began = time.perf_counter()\n"
    "import boto3\n"
    "imported = time.perf_counter()\n"
    "boto3.client('stepfunctions', region_name='us-east-1')\n"
    "client = time.perf_counter()\n"
    "import callback_wrapper.wrapper\n"
    "print(json.dumps({'importBoto3': imported - began, 'oneClient': client - imported,"
    " 'wrapperModules': time.perf_counter() - client}))\n"
)


def _wrapper_startup(image: str) -> dict[str, float]:
    done = subprocess.run(
        ["docker", "run", "--rm", "--network", "host", "--entrypoint", "python3", image, "-c", WRAPPER_STARTUP_CODE],
        capture_output=True,
        text=True,
        check=True,
    )
    timings: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return timings


def run(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    ours: list[dict[str, float]] = []
    bare: list[dict[str, float]] = []
    startup: list[dict[str, float]] = []
    with local_stack(args.state_dir, instances=2) as stack:
        image = fixtures.register_job_type(stack)
        events = DockerEvents()
        try:
            for _ in range(args.samples + 1):
                ours.append(_ours(stack, events))
                bare.append(_bare(image, events))
                startup.append(_wrapper_startup(image))
        finally:
            events.close()
    # The first of each warms caches (a dispatch worker, the image's pages): dropped.
    ours, bare, startup = ours[1:], bare[1:], startup[1:]

    def mid(samples: list[dict[str, float]], key: str) -> float:
        return median(sample[key] for sample in samples)

    def spread(samples: list[dict[str, float]], key: str) -> str:
        values = [sample[key] for sample in samples]
        return f"{millis(median(values))} ({millis(min(values))}–{millis(max(values))})"

    added = {key: mid(ours, key) - mid(bare, key) for key in ("createToFirstLine", "lastLineToSignalled")}
    total_added = sum(added.values())
    rows = [
        [
            "docker create → job's first line",
            spread(ours, "createToFirstLine"),
            spread(bare, "createToFirstLine"),
            millis(added["createToFirstLine"]),
        ],
        [
            "job's last line → task signalled (bare: `docker run` returns)",
            spread(ours, "lastLineToSignalled"),
            spread(bare, "lastLineToSignalled"),
            millis(added["lastLineToSignalled"]),
        ],
        [
            "net added to the job's path (both intervals)",
            "",
            "",
            f"**{millis(total_added)}** (target < {millis(TARGET_ADDED_SECONDS)})",
        ],
    ]
    context_rows = [
        [
            "execution start → the host side starts (state machine, dispatch, SSM)",
            spread(ours, "executionStartToCommandStart"),
        ],
        ["host side start → docker create (job record, input, image check)", spread(ours, "hostSidePreparation")],
        ["job's last line → execution end", spread(ours, "lastLineToExecutionEnd")],
        [
            "task signalled → container exited (after the signal: off the path)",
            spread(ours, "containerExitAfterSignal"),
        ],
        ["bare: `docker run` invoked → docker create (the CLI)", spread(bare, "cliToCreate")],
        ["bare: job's last line → container exited", spread(bare, "lastLineToContainerExit")],
    ]
    report = [
        table(["interval, median (min–max)", "ours: host side + wrapper", "bare docker run", "added"], rows),
        "",
        table(["around it (ours unless said), median (min–max)", "seconds"], context_rows),
        "",
        table(
            ["in the image, before the wrapper starts the job, median (min–max)", "time"],
            [
                ["import boto3", spread(startup, "importBoto3")],
                ["one Step Functions client", spread(startup, "oneClient")],
                ["the wrapper's own modules", spread(startup, "wrapperModules")],
            ],
        ),
    ]
    results = {
        "parameters": {"samples": args.samples},
        "addedSeconds": {**added, "total": total_added},
        "ours": ours,
        "bare": bare,
        "wrapperStartup": startup,
    }
    return results, "\n".join(report)
