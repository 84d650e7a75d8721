"""The dispatch function's cold start and warm overhead, against bare boto3, in one run.

Cold: a fresh interpreter per sample (round-robin across the variants, so load hits all alike)
times its own import with perf_counter and reports it; the parent also times the whole process.
`-X importtime` then says which packages the dispatch module adds over boto3.

Warm: a worker process imports the handler and calls it with botocore's Stubber on its two
clients: each call includes the handler's validation and bookkeeping, Powertools (Logger with
the Lambda context, Metrics flushing EMF to stdout) and botocore's endpoint resolution,
parameter validation and serialisation of its four AWS calls; it excludes signing, HTTP, the
services' own time and response parsing. Tracing is off in the worker: X-Ray needs the segment
Lambda opens.

Python is this machine's (the venv's), not Lambda's python3.13 on arm64: compare ratios, not
absolute times.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import median, millis, percentile, ratio, table
from local_stack.client import CREDENTIALS
from local_stack.resources import function_environment
from local_stack.template import ROOT, Stack

FUNCTION = "DispatchFunction"
SAMPLE_EVENT = ROOT / "events" / "dispatch" / "checksum.json"
# label → (statement, deployed tracing?)
VARIANTS: dict[str, tuple[str, bool]] = {
    "python, no import": ("pass", False),
    "import boto3": ("import boto3", False),
    "import boto3 + its two clients": ("import boto3; boto3.client('ssm'); boto3.client('dynamodb')", False),
    "import dispatch.app, tracing off": ("import dispatch.app", False),
    "import dispatch.app, as deployed (Tracer on)": ("import dispatch.app", True),
}
BASELINE = "import boto3"
IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--samples", type=int, default=15, help="fresh processes per variant")
    parser.add_argument("--calls", type=int, default=1000, help="warm handler calls timed")


def function_env(tracing: bool) -> dict[str, str]:
    """The dispatch function's environment as template.yaml deploys it, with this machine's
    PATH and dummy credentials; `tracing` makes Powertools believe it runs in Lambda."""
    stack = Stack()
    env = function_environment(stack, FUNCTION)
    # The local stack's overrides (a 1-second catalog cache, tracing and metrics off) do not apply.
    deployed = stack.properties(FUNCTION).get("Environment", {}).get("Variables", {})
    env.update({key: str(value) for key, value in deployed.items()})
    for local_only in ("POWERTOOLS_TRACE_DISABLED", "POWERTOOLS_METRICS_DISABLED"):
        env.pop(local_only, None)
    env.update(
        {
            "PATH": os.environ["PATH"],
            "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}",
            "AWS_REGION": stack.region,
            "AWS_DEFAULT_REGION": stack.region,
            # No configuration files: Lambda has none, and a developer's would skew the figures.
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            **CREDENTIALS,
        }
    )
    if tracing:
        env.update({"AWS_LAMBDA_FUNCTION_NAME": stack.physical_name(FUNCTION), "AWS_XRAY_CONTEXT_MISSING": "IGNORE_ERROR"})
    else:
        env["POWERTOOLS_TRACE_DISABLED"] = "true"
    return env


def _timed_import(statement: str, env: dict[str, str]) -> tuple[float, float]:
    """(seconds the statement took inside a fresh interpreter, seconds of the whole process)."""
    code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1]), time.perf_counter() - began


def _self_times(statement: str, env: dict[str, str]) -> tuple[Counter[str], float]:
    """Self time (µs) of each top-level package `-X importtime` reports; total cumulative µs."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", statement], env=env, capture_output=True, text=True, check=True
    )
    by_package: Counter[str] = Counter()
    total = 0
    for line in done.stderr.splitlines():
        match = IMPORT_LINE.match(line)
        if match is None:
            continue
        own, cumulative, indent, module = int(match[1]), int(match[2]), match[3], match[4]
        # dispatch.app's own body creates the clients and the Powertools objects: kept apart.
        by_package[module if module == "dispatch.app" else module.split(".")[0]] += own
        if not indent:
            total += cumulative
    return by_package, total


def _breakdown(samples: int) -> list[dict[str, Any]]:
    """Median self time by package: dispatch.app as deployed, against bare boto3."""
    runs = min(samples, 5)
    dispatch_env, boto_env = function_env(tracing=True), function_env(tracing=False)
    dispatch_runs = [_self_times("import dispatch.app", dispatch_env)[0] for _ in range(runs)]
    boto_runs = [_self_times("import boto3", boto_env)[0] for _ in range(runs)]
    packages = set().union(*dispatch_runs)
    rows = []
    for package in packages:
        ours = median(run[package] for run in dispatch_runs) / 1e6
        bare = median(run[package] for run in boto_runs) / 1e6
        rows.append({"package": package, "dispatchSeconds": ours, "boto3Seconds": bare, "addedSeconds": ours - bare})
    return sorted(rows, key=lambda row: -row["addedSeconds"])


def _warm(calls: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as directory:
        out = Path(directory) / "warm.json"
        subprocess.run(
            [sys.executable, "-m", "bench.cold_start", "--warm-worker", str(calls), str(out)],
            env=function_env(tracing=False),
            cwd=ROOT,
            # Powertools logs and EMF metrics go to stdout, as in Lambda: written, not kept.
            stdout=subprocess.DEVNULL,
            check=True,
        )
        measured: dict[str, Any] = json.loads(out.read_text())
        return measured


def run(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    envs = {label: function_env(tracing) for label, (_, tracing) in VARIANTS.items()}
    samples: dict[str, list[tuple[float, float]]] = {label: [] for label in VARIANTS}
    for _ in range(args.samples):
        for label, (statement, _) in VARIANTS.items():
            samples[label].append(_timed_import(statement, envs[label]))
    base_import = median(imported for imported, _ in samples[BASELINE])
    base_process = median(process for _, process in samples[BASELINE])
    summary, rows = [], []
    for label, values in samples.items():
        imported = median(value for value, _ in values)
        process = median(value for _, value in values)
        summary.append({"variant": label, "importSeconds": imported, "processSeconds": process})
        rows.append(
            [
                label,
                millis(imported),
                f"{ratio(imported, base_import):.2f}×",
                millis(process),
                f"{ratio(process, base_process):.2f}×",
            ]
        )
    breakdown = _breakdown(args.samples)
    warm = _warm(args.calls)
    report = [
        table(["fresh process", "import, median", "vs import boto3", "process wall, median", "vs boto3 process"], rows),
        "",
        "What `import dispatch.app` (as deployed) adds over `import boto3`, self time by package (median of 5, -X importtime):",
        "",
        table(
            ["package", "dispatch.app", "import boto3", "added"],
            [
                [row["package"], millis(row["dispatchSeconds"]), millis(row["boto3Seconds"]), millis(row["addedSeconds"])]
                for row in breakdown[:10]
            ],
        ),
        "",
        table(
            ["warm handler, per call", "p50", "p99", "mean"],
            [
                [
                    f"lambda_handler, {warm['calls']} calls (stubbed AWS)",
                    millis(warm["handler"]["p50"]),
                    millis(warm["handler"]["p99"]),
                    millis(warm["handler"]["mean"]),
                ],
                [
                    "its 4 stubbed AWS calls alone",
                    millis(warm["awsCalls"]["p50"]),
                    millis(warm["awsCalls"]["p99"]),
                    millis(warm["awsCalls"]["mean"]),
                ],
            ],
        ),
        "",
        f"First call after the import (catalog read, operation models loaded): {millis(warm['firstCallSeconds'])}",
    ]
    results = {
        "parameters": {"samples": args.samples, "calls": args.calls},
        "summary": summary,
        "importBreakdown": breakdown,
        "warm": warm,
        "samples": samples,
    }
    return results, "\n".join(report)


# --- the warm worker: runs in its own process with the function's environment --------------------
def _stats(values: list[float]) -> dict[str, float]:
    return {"p50": percentile(values, 50), "p99": percentile(values, 99), "mean": sum(values) / len(values)}


def _warm_worker(calls: int, out: Path) -> None:
    from botocore.stub import Stubber

    from local_stack.lambda_runtime import Context

    import dispatch.app as app

    stack = Stack()
    event = json.loads(SAMPLE_EVENT.read_text(encoding="utf-8"))
    catalog_entry = stack.properties("ChecksumJobType")
    ssm, dynamodb = Stubber(app.ssm), Stubber(app.dynamodb)
    ssm.add_response(
        "get_parameter",
        {"Parameter": {"Name": catalog_entry["Name"], "Type": "String", "Value": catalog_entry["Value"]}},
    )
    warmup = 20

    def queue(count: int) -> None:
        for _ in range(count):
            ssm.add_response(
                "describe_instance_information",
                {"InstanceInformationList": [{"InstanceId": "i-0123456789abcdef0", "PingStatus": "Online"}]},
            )
            dynamodb.add_response("put_item", {})
            ssm.add_response("send_command", {"Command": {"CommandId": "0b2e0c6e-1c7d-4a43-9a6f-0d1e2f3a4b5c"}})
            dynamodb.add_response("update_item", {})

    queue(1 + warmup + calls)
    ssm.activate()
    dynamodb.activate()

    def context() -> Context:
        return Context(
            function_name=os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "dispatch"),
            memory_limit_in_mb=256,
            invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:dispatch",
            aws_request_id="bench",
            deadline=time.monotonic() + 30,
        )

    began = time.perf_counter()
    app.lambda_handler(event, context())  # type: ignore[arg-type]
    first_call = time.perf_counter() - began
    for _ in range(warmup):
        app.lambda_handler(event, context())  # type: ignore[arg-type]
    handler_times = []
    for _ in range(calls):
        began = time.perf_counter()
        app.lambda_handler(event, context())  # type: ignore[arg-type]
        handler_times.append(time.perf_counter() - began)

    # The same four stubbed calls without the handler: botocore's share of the above.
    queue(calls)
    aws_times = []
    for _ in range(calls):
        began = time.perf_counter()
        app.ssm.describe_instance_information(Filters=[{"Key": "PingStatus", "Values": ["Online"]}])
        app.dynamodb.put_item(TableName="t", Item={"jobId": {"S": "job-0"}})
        app.ssm.send_command(InstanceIds=["i-0123456789abcdef0"], DocumentName="d")
        app.dynamodb.update_item(TableName="t", Key={"jobId": {"S": "job-0"}})
        aws_times.append(time.perf_counter() - began)
    out.write_text(
        json.dumps(
            {
                "calls": calls,
                "firstCallSeconds": first_call,
                "handler": _stats(handler_times),
                "awsCalls": _stats(aws_times),
            }
        )
    )


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--warm-worker":
        _warm_worker(int(sys.argv[2]), Path(sys.argv[3]))
    else:
        sys.exit("usage: python -m bench.cold_start --warm-worker CALLS OUT (run by `python -m bench cold-start`)")
