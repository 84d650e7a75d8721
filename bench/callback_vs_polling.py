"""Callback against the polling loop it replaces: the same job, side by side, in one run.

Every job runs the same image and code (bench/fixtures.py) on the same local stack, with
starts interleaved across variants and spaced by --stagger so load hits them alike. From each
execution's history: state transitions (what Standard workflows bill), Lambda invocations, polls,
history size, and the resume latency, from the job's last line (its own clock) to the
execution's end. Then what that costs at AWS list prices for 1-minute to 24-hour jobs.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from typing import Any

from bench import fixtures, pricing
from bench.common import local_stack, median, millis, ratio, seconds, table
from bench.fixtures import ExecutionFigures
from local_stack.client import LocalStackClient

COST_INTERVALS = (5, 10, 30, 60)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--durations", default="2,10,30", help="job lengths in seconds (sleepSeconds)")
    parser.add_argument("--intervals", default="5,10", help="poll intervals in seconds")
    parser.add_argument(
        "--repeats", type=int, default=3, help="jobs per variant and duration, their lengths offset over an interval"
    )
    parser.add_argument("--stagger", type=float, default=1.0, help="seconds between two starts")


def _numbers(text: str) -> list[int]:
    return [int(value) for value in text.split(",") if value]


def _offsets(args: argparse.Namespace) -> list[float]:
    return [round(repeat * max(_numbers(args.intervals)) / args.repeats, 2) for repeat in range(args.repeats)]


def _start_all(
    stack: LocalStackClient, polling_arn: str, image: str, args: argparse.Namespace
) -> list[tuple[str, int, str]]:
    """Start every job, variants interleaved; (variant, duration, execution ARN) each."""
    sfn = stack.client("stepfunctions")
    instances = stack.state["instance_ids"]
    started: list[tuple[str, int, str]] = []
    tag = uuid.uuid4().hex[:6]
    for repeat in range(args.repeats):
        # Where a job ends between two polls decides polling's resume latency. Lengths that are
        # multiples of the interval would all end just after a poll (its worst case), so the
        # repeats add offsets spread over the longest interval, the same for every variant.
        offset = _offsets(args)[repeat]
        for duration in _numbers(args.durations):
            length = duration + offset
            plan = [("callback", stack.state["state_machine_arn"], fixtures.callback_request(length))]
            for interval in _numbers(args.intervals):
                # The fixture picks no instance itself: spread its jobs over the pool as dispatch does.
                instance = instances[(len(started) + interval) % len(instances)]
                plan.append(
                    (
                        f"polling every {interval} s",
                        polling_arn,
                        fixtures.polling_input(image, instance, length, interval),
                    )
                )
            for variant, machine, request in plan:
                # moto's engine needs an explicit name (PLATFORM-NOTES.md).
                name = f"bench-{tag}-{len(started)}-{variant.split()[0]}-{duration}s-{repeat}"
                arn = sfn.start_execution(stateMachineArn=machine, name=name, input=json.dumps(request))["executionArn"]
                started.append((variant, duration, arn))
                time.sleep(args.stagger)
    return started


def _structure(runs: list[ExecutionFigures]) -> pricing.Structure:
    """Fixed and per-poll counts, from the states each history went through."""
    polled = [run for run in runs if run.polls]
    return pricing.Structure(
        transitions_fixed=round(median(run.transitions - run.loop_transitions for run in runs)),
        transitions_per_poll=round(median(run.loop_transitions / run.polls for run in polled)) if polled else 0,
        events_fixed=round(median(run.events - run.loop_events for run in runs)),
        events_per_poll=round(median(run.loop_events / run.polls for run in polled)) if polled else 0,
    )


def run(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    # Slots for every callback job at once: the polling fixture has no placement to wait for,
    # and a Job.NoCapacity retry would add transitions the comparison is not about.
    slots = max(2, args.repeats * len(_numbers(args.durations)))
    with local_stack(args.state_dir, instances=2, slots=slots) as stack:
        image = fixtures.register_job_type(stack)
        polling_arn = fixtures.deploy_polling(stack)
        started = _start_all(stack, polling_arn, image, args)
        longest = max(_numbers(args.durations)) + 2 * max(_numbers(args.intervals)) + 180
        for _, _, arn in started:
            stack.wait(arn, timeout=longest)
        runs = [(variant, duration, fixtures.execution_figures(stack, arn)) for variant, duration, arn in started]

    variants = list(dict.fromkeys(variant for variant, _, _ in runs))
    rows, summary = [], []
    for duration in _numbers(args.durations):
        for variant in variants:
            group = [figures for v, d, figures in runs if v == variant and d == duration]
            ok = [figures for figures in group if figures.status == "SUCCEEDED"]
            polls = median(figures.polls for figures in ok)
            # The AWS design of the polling loop has a Lambda "send command" and one "check status" per poll.
            lambdas = median(figures.lambda_invocations for figures in ok) if variant == "callback" else 1 + polls
            entry: dict[str, Any] = {
                "variant": variant,
                "durationSeconds": duration,
                "jobs": len(group),
                "succeeded": len(ok),
                "transitions": median(figures.transitions for figures in ok),
                "lambdaInvocationsMeasured": median(figures.lambda_invocations for figures in ok),
                "lambdaInvocationsAwsDesign": lambdas,
                "polls": polls,
                "historyEvents": median(figures.events for figures in ok),
                "resumeLatencyMedian": median(figures.resume_latency for figures in ok),
                "resumeLatencyMax": max((figures.resume_latency for figures in ok), default=float("nan")),
                "startToJobMedian": median(figures.job_start - figures.started for figures in ok),
                "executionSecondsMedian": median(figures.ended - figures.started for figures in ok),
            }
            summary.append(entry)
            rows.append(
                [
                    f"{duration} s + {'/'.join(f'{offset:g}' for offset in _offsets(args))} s",
                    variant,
                    f"{len(ok)}/{len(group)}",
                    f"{entry['transitions']:g}",
                    f"{entry['lambdaInvocationsMeasured']:g} / {lambdas:g}",
                    f"{polls:g}",
                    f"{entry['historyEvents']:g}",
                    f"{millis(entry['resumeLatencyMedian'])} ({millis(entry['resumeLatencyMax'])})",
                    seconds(entry["startToJobMedian"]),
                    seconds(entry["executionSecondsMedian"], 1),
                ]
            )

    def latencies(variant: str) -> list[float]:
        return [f.resume_latency for v, _, f in runs if v == variant and f.status == "SUCCEEDED"]

    callback_latency = median(latencies("callback"))
    ratios = {
        variant: ratio(callback_latency, median(latencies(variant))) for variant in variants if variant != "callback"
    }
    callback_structure = _structure([f for v, _, f in runs if v == "callback" and f.status == "SUCCEEDED"])
    polling_structure = _structure([f for v, _, f in runs if v != "callback" and f.status == "SUCCEEDED"])

    header = [
        "job",
        "variant",
        "ok",
        "transitions",
        "Lambda invocations (here / AWS design)",
        "polls",
        "history events",
        "resume latency median (max)",
        "start → job's first line",
        "execution",
    ]
    report = [
        table(header, rows),
        "",
        "Resume latency, callback median as a share of polling median (all durations): "
        + ", ".join(f"{variant}: {share:.1%}" for variant, share in ratios.items()),
        "",
        pricing.formulas(callback_structure, polling_structure),
        "",
        pricing.cost_table(callback_structure, polling_structure, COST_INTERVALS),
        "",
        "Longest job a polling execution can follow before its history reaches 25,000 events: "
        + ", ".join(f"every {n} s: {pricing.longest_job_hours(polling_structure, n):.1f} h" for n in COST_INTERVALS),
    ]
    results = {
        "parameters": {
            "durations": _numbers(args.durations),
            "intervals": _numbers(args.intervals),
            "repeats": args.repeats,
            "offsets": _offsets(args),
            "stagger": args.stagger,
        },
        "summary": summary,
        "resumeLatencyShareOfPolling": ratios,
        "structure": {"callback": vars(callback_structure), "polling": vars(polling_structure)},
        "runs": [
            {"variant": v, "durationSeconds": d, **vars(f), "resumeLatency": f.resume_latency} for v, d, f in runs
        ],
    }
    return results, "\n".join(report)
