"""What a job costs in Step Functions and Lambda, callback against polling, at AWS list prices.

The structure (transitions and history events per job and per poll) comes from the measured
histories; the prices and the Lambda duration are stated here, with their source. EC2 time,
DynamoDB and SSM Run Command (free on EC2) are left out: the same in both designs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bench.common import table
from local_stack.template import Stack

# us-east-1 list prices (aws.amazon.com/step-functions/pricing, /lambda/pricing), free tiers ignored.
USD_PER_TRANSITION = 0.025 / 1000  # Standard workflows: $0.025 per 1,000 state transitions
USD_PER_LAMBDA_REQUEST = 0.20 / 1_000_000  # $0.20 per 1M requests
USD_PER_GB_SECOND_ARM64 = 0.0000133334  # arm64, first 7.5 billion GB-s a month
# Billed duration assumed for every Lambda invocation of either design (a few AWS calls each);
# bench/cold_start.py measures the dispatch handler's own share of it.
LAMBDA_BILLED_SECONDS = 0.1
HISTORY_EVENT_LIMIT = 25_000  # Step Functions' execution history quota
JOB_LENGTHS = (("1 minute", 60), ("1 hour", 3600), ("24 hours", 86_400))


def lambda_memory_gb() -> float:
    """The functions' memory as template.yaml deploys them (Globals.Function.MemorySize)."""
    memory_mb = int(Stack().template["Globals"]["Function"]["MemorySize"])
    return memory_mb / 1024


def usd_per_invocation() -> float:
    return USD_PER_LAMBDA_REQUEST + lambda_memory_gb() * LAMBDA_BILLED_SECONDS * USD_PER_GB_SECOND_ARM64


@dataclass(frozen=True)
class Structure:
    """Per-job counts as measured: a fixed part plus a part per poll (0 for the callback)."""

    transitions_fixed: int
    transitions_per_poll: int
    events_fixed: int
    events_per_poll: int


@dataclass(frozen=True)
class JobCost:
    polls: int
    transitions: int
    lambda_invocations: int
    history_events: int

    @property
    def usd(self) -> float:
        return self.transitions * USD_PER_TRANSITION + self.lambda_invocations * usd_per_invocation()


def callback_cost(structure: Structure) -> JobCost:
    """Whatever the job's length: the fixed transitions and one dispatch invocation."""
    return JobCost(0, structure.transitions_fixed, 1, structure.events_fixed)


def polling_cost(structure: Structure, job_seconds: float, poll_seconds: int) -> JobCost:
    """One poll per interval the job runs; a Lambda "send command" plus one "check status" per poll."""
    polls = math.ceil(job_seconds / poll_seconds)
    return JobCost(
        polls,
        structure.transitions_fixed + structure.transitions_per_poll * polls,
        1 + polls,
        structure.events_fixed + structure.events_per_poll * polls,
    )


def longest_job_hours(structure: Structure, poll_seconds: int) -> float:
    """How long a job may run before the polling execution's history hits its quota."""
    if not structure.events_per_poll:
        return math.inf
    return (HISTORY_EVENT_LIMIT - structure.events_fixed) / structure.events_per_poll * poll_seconds / 3600


def formulas(callback: Structure, polling: Structure) -> str:
    gb = lambda_memory_gb()
    return "\n".join(
        [
            f"- price of one Lambda invocation: L = ${USD_PER_LAMBDA_REQUEST:.7f} (request) + {gb:g} GB × "
            f"{LAMBDA_BILLED_SECONDS:g} s × ${USD_PER_GB_SECOND_ARM64} (arm64 GB-s) = ${usd_per_invocation():.9f}",
            f"- price of one state transition: T = $0.025 / 1,000 = ${USD_PER_TRANSITION:.6f}",
            f"- callback, any length: {callback.transitions_fixed} T + 1 L",
            f"- polling every N s for a D-second job: P = ceil(D / N) polls; "
            f"({polling.transitions_fixed} + {polling.transitions_per_poll} P) T + (1 + P) L "
            "(the SDK-integration flavour of the fixture: the same transitions, no L)",
            f"- history: callback {callback.events_fixed} events; polling {polling.events_fixed} + "
            f"{polling.events_per_poll} P events, limit {HISTORY_EVENT_LIMIT:,}",
        ]
    )


def cost_table(callback: Structure, polling: Structure, poll_intervals: tuple[int, ...]) -> str:
    rows = []
    for label, length in JOB_LENGTHS:
        base = callback_cost(callback)
        rows.append([label, "callback", base.transitions, base.lambda_invocations, f"${base.usd:.6f}", "1×", "yes"])
        for interval in poll_intervals:
            cost = polling_cost(polling, length, interval)
            fits = "yes" if cost.history_events <= HISTORY_EVENT_LIMIT else f"no ({cost.history_events:,} events)"
            rows.append(
                [
                    label,
                    f"polling every {interval} s",
                    f"{cost.transitions:,}",
                    f"{cost.lambda_invocations:,}",
                    f"${cost.usd:.6f}",
                    f"{cost.usd / base.usd:,.0f}×",
                    fits,
                ]
            )
    header = ["job length", "design", "transitions", "Lambda invocations", "USD per job", "vs callback", "fits history"]
    return table(header, rows)
