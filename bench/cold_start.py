"""The dispatch function's cold start and warm overhead, against bare boto3, in one run.

Cold: a fresh interpreter per sample (round-robin across the variants, so load hits all alike)
times its own import with perf_counter and reports it; the parent also times the whole process.
`-X importtime` then says which packages the dispatch module adds over boto3.

Warm: a worker process records what one warm handler call asks AWS (moto in-process) and then
replays those answers with botocore's Stubber for every timed call. A timed call includes the
handler's validation and bookkeeping, Powertools (Logger with the Lambda context, Metrics
flushing EMF to stdout) and botocore's endpoint resolution, parameter validation and
serialisation of each AWS call; it excludes signing, HTTP, the services' own time and response
parsing. The same AWS calls made directly, stubbed alike, are timed beside it. Tracing is off
in the worker: X-Ray needs the segment Lambda opens.

Python is this machine's (the venv's), not Lambda's python3.13 on arm64: compare ratios, not
absolute times.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3

from bench.common import median, millis, percentile, ratio, table
from local_stack.client import CREDENTIALS
from local_stack.resources import function_environment
from local_stack.template import ROOT, Stack

FUNCTION = "DispatchFunction"
SAMPLE_EVENT = ROOT / "events" / "dispatch" / "checksum.json"
BASELINE = "import boto3"
WARMUP_CALLS = 20
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
        env.update(
            {"AWS_LAMBDA_FUNCTION_NAME": stack.physical_name(FUNCTION), "AWS_XRAY_CONTEXT_MISSING": "IGNORE_ERROR"}
        )
    else:
        env["POWERTOOLS_TRACE_DISABLED"] = "true"
    return env


def _variants(services: list[str]) -> dict[str, tuple[str, bool]]:
    """label → (statement, tracing as deployed?), for the clients dispatch.app creates."""
    clients = f"clients = {{service: boto3.client(service) for service in {services!r}}}"
    # What app.py builds at module scope from Powertools, on the same clients, without our code.
    provider = "SSMProvider(boto3_client=clients['ssm'])" if "ssm" in services else "SSMProvider()"
    powertools = (
        "from aws_lambda_powertools import Logger, Metrics, Tracer; "
        "from aws_lambda_powertools.utilities.parameters import SSMProvider; "
        f"Logger(); Metrics(); Tracer(); {provider}"
    )
    return {
        "python, no import": ("pass", False),
        "import boto3": ("import boto3", False),
        f"import boto3 + its clients ({', '.join(services)})": (f"import boto3; {clients}", False),
        "… + Powertools' Logger, Metrics, Tracer, SSMProvider (Tracer on)": (
            f"import boto3; {clients}; {powertools}",
            True,
        ),
        "import dispatch.app, tracing off": ("import dispatch.app", False),
        "import dispatch.app, as deployed (Tracer on)": ("import dispatch.app", True),
    }


def _dispatch_clients() -> list[str]:
    """The services of the clients dispatch.app creates at import, in order."""
    code = (
        "import dispatch.app as app; from botocore.client import BaseClient; "
        "print(' '.join(v.meta.service_model.service_name for v in vars(app).values() if isinstance(v, BaseClient)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=function_env(tracing=False), capture_output=True, text=True, check=True
    )
    return done.stdout.split()


def _client_times(services: list[str], env: dict[str, str]) -> dict[str, float]:
    """Seconds to create each client after `import boto3`; the first client made also pays the
    session's one-time setup, so a small one (sts) is made first and reported as that."""
    code = (
        "import json, time, boto3\n"
        "times = {}\n"
        f"for service in {['sts', *services]!r}:\n"
        "    began = time.perf_counter(); boto3.client(service); times[service] = time.perf_counter() - began\n"
        "print(json.dumps(times))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    times: dict[str, float] = json.loads(done.stdout)
    return times


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
    dispatch_runs: list[Counter[str]] = []
    boto_runs: list[Counter[str]] = []
    for _ in range(runs):  # alternating, so a burst of load hits both alike
        dispatch_runs.append(_self_times("import dispatch.app", dispatch_env)[0])
        boto_runs.append(_self_times("import boto3", boto_env)[0])
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
    services = _dispatch_clients()
    variants = _variants(services)
    envs = {label: function_env(tracing) for label, (_, tracing) in variants.items()}
    samples: dict[str, list[tuple[float, float]]] = {label: [] for label in variants}
    client_samples: list[dict[str, float]] = []
    for _ in range(args.samples):
        for label, (statement, _) in variants.items():
            samples[label].append(_timed_import(statement, envs[label]))
        client_samples.append(_client_times(services, envs[BASELINE]))
    clients = {service: median(sample[service] for sample in client_samples) for service in client_samples[0]}
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
        "What `import dispatch.app` (as deployed) adds over `import boto3`: self time by package, "
        "median of 5 runs of -X importtime",
        "",
        table(
            ["package", "dispatch.app", "import boto3", "added"],
            [
                [
                    row["package"],
                    millis(row["dispatchSeconds"]),
                    millis(row["boto3Seconds"]),
                    millis(row["addedSeconds"]),
                ]
                for row in breakdown[:10]
            ],
        ),
        "",
        table(
            ["client creation after `import boto3`, median", *clients],
            [["seconds", *(millis(value) for value in clients.values())]],
        ),
        "(sts is made first and pays the session's one-time setup: endpoints, partitions)",
        "",
        table(
            ["warm handler, per call", "p50", "p99", "mean"],
            [
                [
                    f"lambda_handler, {warm['calls']} calls (stubbed AWS)",
                    millis(warm["handler"]["p50"], 2),
                    millis(warm["handler"]["p99"], 2),
                    millis(warm["handler"]["mean"], 2),
                ],
                [
                    f"its {len(warm['awsCallsPerInvocation'])} AWS calls alone (stubbed)",
                    millis(warm["awsCalls"]["p50"], 2),
                    millis(warm["awsCalls"]["p99"], 2),
                    millis(warm["awsCalls"]["mean"], 2),
                ],
            ],
        ),
        "",
        "AWS calls per warm invocation: " + ", ".join(warm["awsCallsPerInvocation"]),
        f"First call after the import, AWS emulated in-process by moto (catalog read, operation models loaded): "
        f"{millis(warm['firstCallSeconds'])}",
    ]
    results = {
        "parameters": {"samples": args.samples, "calls": args.calls},
        "summary": summary,
        "importBreakdown": breakdown,
        "clientCreationSeconds": clients,
        "warm": warm,
        "samples": samples,
    }
    return results, "\n".join(report)


# --- the warm worker: runs in its own process with the function's environment --------------------
def _stats(values: list[float]) -> dict[str, float]:
    return {"p50": percentile(values, 50), "p99": percentile(values, 99), "mean": sum(values) / len(values)}


Call = tuple[Any, str, dict[str, Any], dict[str, Any]]  # client, method, params, response


def _without_empty(value: Any) -> Any:
    """moto answers some fields with "" where AWS leaves them out; Stubber checks lengths."""
    if isinstance(value, dict):
        return {key: _without_empty(item) for key, item in value.items() if item != ""}
    if isinstance(value, list):
        return [_without_empty(item) for item in value]
    return value


def _record(clients: list[Any], calls: list[Call]) -> Callable[[], None]:
    """Record every call the clients make (method, parameters, parsed response) until the
    returned function is called."""
    hooks: list[tuple[Any, str, Callable[..., None]]] = []
    for client in clients:
        methods = {api: method for method, api in client.meta.method_to_api_mapping.items()}
        pending: list[dict[str, Any]] = []

        def parameters(params: dict[str, Any], pending: list[dict[str, Any]] = pending, **_: Any) -> None:
            pending.append(copy.deepcopy(params))

        def response(
            parsed: dict[str, Any],
            model: Any,
            client: Any = client,
            methods: dict[str, str] = methods,
            pending: list[dict[str, Any]] = pending,
            **_: Any,
        ) -> None:
            answer = _without_empty({key: value for key, value in parsed.items() if key != "ResponseMetadata"})
            calls.append((client, methods[model.name], pending.pop(0), answer))

        hooks += [(client, "before-parameter-build", parameters), (client, "after-call", response)]
    for client, event, hook in hooks:
        client.meta.events.register(event, hook)

    def stop() -> None:
        for client, event, hook in hooks:
            client.meta.events.unregister(event, hook)

    return stop


def _warm_worker(calls: int, out: Path) -> None:
    """Record what one warm call of the handler asks AWS and gets back (AWS emulated in-process by
    moto, as the unit tests do), then replay it with botocore's Stubber for every timed call. The
    replay follows the handler's code whatever calls it makes, so it needs no update when the
    dispatch function changes."""
    from botocore.client import BaseClient
    from botocore.stub import Stubber
    from moto import mock_aws

    from local_stack import moto_fixes, resources
    from local_stack.lambda_runtime import Context

    stack = Stack()
    with mock_aws():
        moto_fixes.apply()
        session = boto3.Session()
        dynamodb, ssm, ec2 = (session.client(name) for name in ("dynamodb", "ssm", "ec2"))
        resources.create_tables(dynamodb, stack)
        resources.create_documents(ssm, stack)
        resources.put_catalog(ssm, stack)
        resources.create_instances(ec2, stack, 2)

        import dispatch.app as app

        clients = [value for value in vars(app).values() if isinstance(value, BaseClient)]

        def event() -> dict[str, Any]:
            fresh: dict[str, Any] = json.loads(SAMPLE_EVENT.read_text(encoding="utf-8"))
            fresh["executionArn"] += f"-{uuid.uuid4().hex[:8]}"
            return fresh

        def context() -> Context:
            return Context(
                function_name=os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "dispatch"),
                memory_limit_in_mb=256,
                invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:dispatch",
                aws_request_id=str(uuid.uuid4()),
                deadline=time.monotonic() + 30,
            )

        began = time.perf_counter()
        app.lambda_handler(event(), context())
        first_call = time.perf_counter() - began  # the catalog read and the models' loading included
        recorded: list[Call] = []
        stop_recording = _record(clients, recorded)
        warm_event = event()
        app.lambda_handler(warm_event, context())
        stop_recording()

        stubbers = {id(client): Stubber(client) for client in clients}
        for stubber in stubbers.values():
            stubber.activate()

        def queue() -> None:
            # No expected parameters: the job record's timestamps differ from call to call.
            for client, method, _, answer in recorded:
                stubbers[id(client)].add_response(method, answer)

        handler_times, aws_times = [], []
        for index in range(WARMUP_CALLS + calls):
            queue()
            began = time.perf_counter()
            app.lambda_handler(warm_event, context())
            if index >= WARMUP_CALLS:
                handler_times.append(time.perf_counter() - began)
        # The same calls, made directly: botocore's share of the handler's time.
        for index in range(WARMUP_CALLS + calls):
            queue()
            began = time.perf_counter()
            for client, method, params, _ in recorded:
                getattr(client, method)(**params)
            if index >= WARMUP_CALLS:
                aws_times.append(time.perf_counter() - began)
    out.write_text(
        json.dumps(
            {
                "calls": calls,
                "awsCallsPerInvocation": [
                    f"{client.meta.service_model.service_name}.{method}" for client, method, _, _ in recorded
                ],
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
