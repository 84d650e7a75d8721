"""`python -m bench <name> [options]`: run one benchmark (or `all`), print its tables, write
bench/results/<name>.json. `python -m bench <name> --help` lists a benchmark's options."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import callback_vs_polling, cold_start, fan_out, host_overhead
from bench.common import RESULTS_DIR, load_average, write_results
from local_stack.client import wait_until

CALM_WAIT_SECONDS = 600
Runner = Callable[[argparse.Namespace], tuple[dict[str, Any], str]]
BENCHES: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Runner]] = {
    "callback-vs-polling": (
        "transitions, Lambda invocations and resume latency of the same job, callback against polling",
        callback_vs_polling.add_arguments,
        callback_vs_polling.run,
    ),
    "cold-start": (
        "import time of the dispatch function against bare boto3; warm handler overhead",
        cold_start.add_arguments,
        cold_start.run,
    ),
    "host-overhead": (
        "what the host side and the callback wrapper add to a bare docker run",
        host_overhead.add_arguments,
        host_overhead.run,
    ),
    "fan-out": (
        "many short jobs over many instances: makespan against ideal, dispatch rate, CPU per job",
        fan_out.add_arguments,
        fan_out.run,
    ),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    names = parser.add_subparsers(dest="name", required=True)
    for name, (summary, add_arguments, _) in BENCHES.items():
        sub = names.add_parser(name, help=summary, description=summary)
        _common(sub)
        add_arguments(sub)
    _common(names.add_parser("all", help="every benchmark with its default options, one after the other"))
    return parser


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="use the local stack running there (left running); default: bring one up and take it down",
    )
    parser.add_argument("--results", type=Path, default=RESULTS_DIR, help="where <name>.json goes")
    parser.add_argument(
        "--max-load",
        type=float,
        default=None,
        help="on a shared machine: first wait (10 minutes at most) for the 1-minute load average to drop to this",
    )


def run_one(name: str, args: argparse.Namespace) -> None:
    print(f"## {name}", flush=True)
    if args.max_load is not None and not wait_until(
        lambda: os.getloadavg()[0] <= args.max_load, timeout=CALM_WAIT_SECONDS, interval=5
    ):
        print(f"(the load average stayed above {args.max_load} for {CALM_WAIT_SECONDS} s: running anyway)")
    load_before = load_average()
    results, report = BENCHES[name][2](args)
    path = write_results(name, results, args.results, load_before)
    print(report)
    print(f"\n(raw figures: {path})\n", flush=True)


def main(argv: list[str]) -> None:
    args = _parser().parse_args(argv)
    if args.name != "all":
        run_one(args.name, args)
        return
    for name, (_, add_arguments, _) in BENCHES.items():
        defaults = argparse.ArgumentParser()
        add_arguments(defaults)
        shared = {"state_dir": args.state_dir, "results": args.results, "max_load": args.max_load}
        run_one(name, argparse.Namespace(**vars(defaults.parse_args([])), **shared))


if __name__ == "__main__":
    main(sys.argv[1:])
