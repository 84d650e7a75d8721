"""Fan-out: many short jobs over many instances with a few slots each.

The bench starts --jobs executions of the real state machine, keeping at most --in-flight
running: by default the pool's slots (instances times slots), so the client never asks for
more than the pool holds and the figures do not depend on whether dispatch enforces slots;
0 starts them all at once and leaves the queueing to the stack (Job.NoCapacity and the state
machine's Retry). It reports the makespan against the ideal (jobs times seconds over the pool's
slots), the highest dispatch rate held over a 10-second window, how many jobs ran at once
(overall, and per instance: more than its slots means slots were not enforced) and the CPU
seconds per job, split by where they went.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
import uuid
from collections import defaultdict
from typing import Any

from bench import fixtures
from bench.common import CpuMeter, epoch, local_stack, median, percentile, ratio, seconds, table
from local_stack.client import LocalStackClient

RATE_WINDOW_SECONDS = 10
HEARTBEAT_SECONDS = 300
# Where the workflow's CPU goes (bench.common.CpuMeter): key → what it is.
OUR_CPU = {
    "server": "moto + agent",
    "hostSide": "host side scripts",
    "functions": "dispatch + reaper",
    "containers": "containers",
    "dockerEngine": "dockerd + containerd",
}
TARGET_RATIO = 1.25


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # One wave of the default pool: more only lengthens the run on a machine of a few CPUs.
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--instances", type=int, default=10)
    parser.add_argument("--slots", type=int, default=4, help="slots per instance (the run-job:slots tag)")
    parser.add_argument("--seconds", type=float, default=2.0, help="each job's length (sleepSeconds)")
    parser.add_argument(
        "--in-flight",
        type=int,
        default=None,
        help="most executions running at once (default instances × slots, 0: no limit)",
    )
    parser.add_argument("--max-seconds", type=float, default=900, help="stop submitting after this long")


def _running(stack: LocalStackClient, ours: set[str]) -> set[str]:
    pages = (
        stack.client("stepfunctions")
        .get_paginator("list_executions")
        .paginate(stateMachineArn=stack.state["state_machine_arn"], statusFilter="RUNNING")
    )
    return {e["executionArn"] for page in pages for e in page["executions"]} & ours


def _submit(stack: LocalStackClient, args: argparse.Namespace) -> tuple[list[str], float]:
    """Start the jobs under the in-flight limit; wait for the last. Returns the ARNs and the wall time."""
    limit = args.jobs if args.in_flight == 0 else (args.in_flight or args.instances * args.slots)
    tag = uuid.uuid4().hex[:6]
    started: list[str] = []
    running: set[str] = set()
    began = time.monotonic()
    deadline = began + args.max_seconds
    while (len(started) < args.jobs or running) and time.monotonic() < deadline:
        if running:
            running = _running(stack, running)
        while len(started) < args.jobs and len(running) < limit:
            # The state machine's default heartbeat: on a saturated machine a host side may take
            # more than a minute to start a container, which is what is measured, not a failure.
            request = fixtures.callback_request(args.seconds, heartbeat_seconds=HEARTBEAT_SECONDS)
            arn = stack.start(request, name=f"bench-fan-{tag}-{len(started)}")
            started.append(arn)
            running.add(arn)
        time.sleep(0.25)
    return started, time.monotonic() - began


def _most_at_once(intervals: list[tuple[float, float]]) -> int:
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    peak = current = 0
    for _, step in edges:
        current += step
        peak = max(peak, current)
    return peak


def _best_rate(times: list[float], window: float) -> float:
    """The most events in any `window` seconds, per second."""
    times = sorted(times)
    best, low = 0, 0
    for high, moment in enumerate(times):
        while moment - times[low] > window:
            low += 1
        best = max(best, high - low + 1)
    return best / window


def run(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    with local_stack(args.state_dir, args.instances, args.slots) as stack:
        fixtures.register_job_type(stack)
        instances = len(stack.state["instance_ids"])
        meter = CpuMeter(stack.state["pid"])
        meter.start()
        arns, wall = _submit(stack, args)
        cpu = meter.stop()
        described = [stack.describe(arn) for arn in arns]
        # A dispatch that found no free slot fails with Job.NoCapacity and the Task is retried.
        attempts = [sum(event["type"] == "TaskScheduled" for event in stack.history(arn)) for arn in arns]
        mine = set(arns)
        records = [
            item
            for page in stack.client("dynamodb").get_paginator("scan").paginate(TableName=stack.state["job_table"])
            for item in page["Items"]
            if item["executionArn"]["S"] in mine
        ]
        # The slot is free again when the host side's command ends (the reaper hears of it).
        ssm = stack.client("ssm")
        command_end = {
            item["executionArn"]["S"]: ssm.get_command_invocation(
                CommandId=item["commandId"]["S"], InstanceId=item["instanceId"]["S"]
            )["ExecutionEndDateTime"]
            for item in records
            if "commandId" in item
        }

    done = [d for d in described if d["status"] == "SUCCEEDED"]
    failed: dict[str, int] = defaultdict(int)
    for d in described:
        if d["status"] != "SUCCEEDED":
            failed[f"{d['status']} {d.get('error') or ''}".strip()] += 1
    outputs = {d["executionArn"]: json.loads(d["output"]) for d in done}
    first_start = min(epoch(d["startDate"]) for d in described)
    last_stop = max((epoch(d["stopDate"]) for d in described if d.get("stopDate")), default=math.nan)
    makespan = last_stop - first_start
    slots_total = instances * args.slots
    ideal = args.jobs * args.seconds / slots_total
    intervals = {arn: (out["jobStart"], out["jobEnd"]) for arn, out in outputs.items()}
    per_instance: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for item in records:
        if item["executionArn"]["S"] in intervals:
            per_instance[item["instanceId"]["S"]].append(intervals[item["executionArn"]["S"]])
    most_per_instance = max((_most_at_once(spans) for spans in per_instance.values()), default=0)
    dispatched = [epoch(item["createdAt"]["S"]) for item in records]
    wait_to_start = [outputs[d["executionArn"]]["jobStart"] - epoch(d["startDate"]) for d in done]
    resume = [epoch(d["stopDate"]) - outputs[d["executionArn"]]["jobEnd"] for d in done]
    busy = sum(end - start for start, end in intervals.values())
    slot_after_end = [
        epoch(command_end[d["executionArn"]]) - epoch(d["stopDate"]) for d in done if command_end.get(d["executionArn"])
    ]
    per_job = {key: value / max(len(done), 1) for key, value in cpu.items() if key != "wall"}
    ours = sum(per_job[key] for key in OUR_CPU)
    # Were the machine's CPUs ours alone, the jobs could not finish sooner than this.
    cpu_floor = args.jobs * ours / (os.cpu_count() or 1)

    summary = {
        "jobs": args.jobs,
        "succeeded": len(done),
        "failed": dict(failed),
        "instances": instances,
        "slotsPerInstance": args.slots,
        "inFlightLimit": args.in_flight,
        "jobSeconds": args.seconds,
        "makespanSeconds": makespan,
        "idealSeconds": ideal,
        "makespanOverIdeal": ratio(makespan, ideal),
        "bestDispatchRatePerSecond": _best_rate(dispatched, RATE_WINDOW_SECONDS),
        "meanDispatchRatePerSecond": ratio(len(dispatched), max(dispatched) - min(dispatched))
        if dispatched
        else math.nan,
        "mostJobsAtOnce": _most_at_once(list(intervals.values())),
        "meanJobsAtOnce": ratio(busy, makespan),
        "mostJobsAtOnceOnOneInstance": most_per_instance,
        "startToJobMedian": median(wait_to_start),
        "startToJobP90": percentile(wait_to_start, 90),
        "jobEndToExecutionEndMedian": median(resume),
        "cpuSeconds": cpu,
        "cpuSecondsPerJob": per_job,
        "cpuSecondsPerJobOfTheWorkflow": ours,
        "cpuBoundFloorSeconds": cpu_floor,
        "dispatchAttemptsPerJobMedian": median(attempts),
        "executionEndToCommandEndMedian": median(slot_after_end),
        "dispatchAttemptsPerJobMax": max(attempts, default=0),
        "submitWallSeconds": wall,
    }
    limit = "none (all at once)" if args.in_flight == 0 else str(args.in_flight or slots_total)
    rows = [
        ["jobs (succeeded)", f"{args.jobs} ({len(done)}){'; ' + str(dict(failed)) if failed else ''}"],
        ["instances × slots (client-side in-flight limit)", f"{instances} × {args.slots} ({limit})"],
        ["job length", seconds(args.seconds, 1)],
        [
            "makespan / ideal (jobs × length ÷ slots)",
            f"{seconds(makespan, 1)} / {seconds(ideal, 1)} = **{summary['makespanOverIdeal']:.2f}×** "
            f"(target ≤ {TARGET_RATIO}×)",
        ],
        [
            f"best dispatch rate over {RATE_WINDOW_SECONDS} s (mean)",
            f"{summary['bestDispatchRatePerSecond']:.2f}/s ({summary['meanDispatchRatePerSecond']:.2f}/s)",
        ],
        [
            "jobs running at once: most / mean (pool has)",
            f"{summary['mostJobsAtOnce']} / {summary['meanJobsAtOnce']:.1f} ({slots_total})",
        ],
        ["most at once on one instance (slots)", f"{most_per_instance} ({args.slots})"],
        [
            "execution start → job's first line, median (p90)",
            f"{seconds(summary['startToJobMedian'])} ({seconds(summary['startToJobP90'])})",
        ],
        ["job's last line → execution end, median", seconds(summary["jobEndToExecutionEndMedian"])],
        [
            "CPU s per job: " + " + ".join(OUR_CPU.values()),
            " + ".join(f"{per_job[key]:.2f}" for key in OUR_CPU) + f" = **{ours:.2f}**",
        ],
        [
            "CPU s per job, whole machine (everyone's) / machine capacity used",
            f"{per_job['machine']:.2f} / {cpu['machine'] / (cpu['wall'] * (os.cpu_count() or 1)):.0%}",
        ],
        [
            f"CPU-bound floor: jobs × {ours:.2f} CPU s ÷ {os.cpu_count()} CPUs (makespan over it)",
            f"{seconds(cpu_floor, 1)} ({ratio(makespan, cpu_floor):.2f}×)",
        ],
        [
            "execution end → its command ends (the slot frees), median",
            seconds(summary["executionEndToCommandEndMedian"]),
        ],
        [
            "dispatch attempts per job, median (max): more than 1 is a Job.NoCapacity retry",
            f"{median(attempts):g} ({max(attempts, default=0)})",
        ],
    ]
    return {"parameters": vars(args) | {"state_dir": str(args.state_dir)}, "summary": summary}, table(
        ["fan-out", "figure"], rows
    )
