"""The README's first command: one real job end to end on the local stack, narrated.

Brings the local stack up, starts an execution of the real state machine with
events/requests/demo.json, shows each step as it happens (dispatched, pulled, running,
heartbeats, signalled), prints the job's output and a timeline, and takes the stack down.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from local_stack.__main__ import down, up
from local_stack.client import TERMINAL, LocalStackClient
from local_stack.template import ROOT

DEMO_REQUEST = ROOT / "events" / "requests" / "demo.json"
DEMO_TIMEOUT_SECONDS = 300


class Timeline:
    def __init__(self) -> None:
        self.start = time.monotonic()
        self.entries: list[tuple[float, str, str]] = []
        self.lock = threading.Lock()

    def add(self, source: str, text: str) -> None:
        at = time.monotonic() - self.start
        with self.lock:
            self.entries.append((at, source, text))
        print(f"  {at:6.2f}s  {source:<10} {text}", flush=True)


def _follow_container(job_id: str, timeline: Timeline, stop: threading.Event) -> None:
    """Stream the container's log lines (the wrapper's heartbeats among them) while it lives."""
    while not stop.is_set():
        if subprocess.run(["docker", "container", "inspect", job_id], capture_output=True).returncode == 0:
            break
        time.sleep(0.1)
    else:
        return
    with subprocess.Popen(
        ["docker", "logs", "--follow", job_id], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as logs:
        assert logs.stdout is not None
        for line in logs.stdout:
            try:  # the callback wrapper logs JSON lines: show their event
                message = json.loads(line).get("event", line.strip())
            except ValueError:
                message = line.strip()
            timeline.add("container", str(message))


def _follow_host(path: Path, timeline: Timeline, stop: threading.Event) -> None:
    """The host side's progress lines, from the local agent's live output file."""
    offset = 0
    while not stop.is_set():
        if path.exists():
            data = path.read_text(errors="replace")
            for line in data[offset:].splitlines():
                timeline.add("host", line)
            offset = len(data)
        time.sleep(0.1)


def run_demo(state_dir: Path) -> int:
    began = time.monotonic()
    print("run-job demo: bringing up the local stack (moto, the dispatch code, the local agent, the worker image)")
    state = up(state_dir, instances=2, slots=None)
    try:
        return _run(LocalStackClient(state), state, began)
    finally:
        print("run-job demo: taking the local stack down")
        down(state_dir)
        print(f"run-job demo: done in {time.monotonic() - began:.1f} s")


def _run(stack: LocalStackClient, state: dict[str, Any], began: float) -> int:
    request = json.loads(DEMO_REQUEST.read_text())
    ready = time.monotonic() - began
    print(
        f"run-job demo: stack ready after {ready:.1f} s; starting an execution with {DEMO_REQUEST.relative_to(ROOT)}:"
    )
    print("  " + json.dumps(request))
    timeline, stop, threads = Timeline(), threading.Event(), []
    arn = stack.start(request)
    seen_events, job_id = 0, None
    deadline = time.monotonic() + DEMO_TIMEOUT_SECONDS
    status = "RUNNING"
    while status not in TERMINAL and time.monotonic() < deadline:
        history = stack.history(arn)
        for event in history[seen_events:]:
            timeline.add("execution", event["type"])
        seen_events = len(history)
        if job_id is None and (ids := stack.job_ids(arn)):
            job_id = ids[0]
            record = stack.job(job_id)
            timeline.add(
                "dispatch", f"recorded {job_id} on {record['instanceId']['S']}, status {record['status']['S']}"
            )
            if "commandId" in record:
                host_out = (
                    Path(state["state_dir"])
                    / "instances"
                    / record["instanceId"]["S"]
                    / f"{record['commandId']['S']}.stdout"
                )
                for target, arg in ((_follow_host, host_out), (_follow_container, job_id)):
                    thread = threading.Thread(target=target, args=(arg, timeline, stop), daemon=True)
                    thread.start()
                    threads.append(thread)
        status = stack.describe(arn)["status"]
        time.sleep(0.2)
    time.sleep(0.5)  # let the followers print the last lines
    stop.set()
    outcome = stack.wait(arn, timeout=5)
    for event in stack.history(arn)[seen_events:]:
        timeline.add("execution", event["type"])
    print(f"\nrun-job demo: execution {outcome.status}")
    if outcome.output is not None:
        print("job output:\n" + json.dumps(outcome.output, indent=2, ensure_ascii=False))
    else:
        print(f"error: {outcome.error}\ncause: {outcome.cause}")
    print("\ntimeline (seconds from the start of the execution):")
    for at, source, text in timeline.entries:
        print(f"  {at:6.2f}s  {source:<10} {text}")
    return 0 if outcome.status == "SUCCEEDED" else 1
