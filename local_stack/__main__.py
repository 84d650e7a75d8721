"""`python -m local_stack up|down|serve|demo` (the Makefile's local-up, local-down, demo)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from local_stack.template import ROOT

DEFAULT_STATE_DIR = ROOT / ".local-stack"
# First run builds an offline base image and the worker image: minutes, not seconds.
UP_TIMEOUT_SECONDS = 900


def read_state(state_dir: Path) -> dict[str, Any] | None:
    path = state_dir / "state.json"
    if not path.exists():
        return None
    state: dict[str, Any] = json.loads(path.read_text())
    return state


def alive(pid: int) -> bool:
    try:
        # When this process started the server (the demo, the tests), reap it: an exited
        # child stays a zombie, and a zombie still answers kill(pid, 0).
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def up(state_dir: Path, instances: int, slots: int | None) -> dict[str, Any]:
    """Start the server in the background; return its state once ready. Echoes its progress."""
    existing = read_state(state_dir)
    if existing and alive(existing["pid"]):
        return existing
    state_dir.mkdir(parents=True, exist_ok=True)
    log_path = state_dir / "server.log"
    log = log_path.open("w")
    args = [sys.executable, "-m", "local_stack", "serve", "--state-dir", str(state_dir), "--instances", str(instances)]
    if slots is not None:
        args += ["--slots", str(slots)]
    server = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
    shown = 0
    deadline = time.monotonic() + UP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        lines = log_path.read_text(errors="replace").splitlines()
        for line in lines[shown:]:
            if line.startswith("local-stack:"):
                print(line, file=sys.stderr, flush=True)
        shown = len(lines)
        state = read_state(state_dir)
        if state and state["pid"] == server.pid:
            return state
        if server.poll() is not None:
            tail = "\n".join(lines[-30:])
            raise SystemExit(f"local stack failed to start (exit {server.returncode}); {log_path}:\n{tail}")
        time.sleep(0.2)
    server.terminate()
    raise SystemExit(f"local stack not ready after {UP_TIMEOUT_SECONDS} s; see {log_path}")


def down(state_dir: Path) -> None:
    state = read_state(state_dir)
    if state is None or not alive(state["pid"]):
        (state_dir / "state.json").unlink(missing_ok=True)
        return
    os.kill(state["pid"], signal.SIGTERM)
    deadline = time.monotonic() + 90
    while alive(state["pid"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    if alive(state["pid"]):
        os.kill(state["pid"], signal.SIGKILL)
    (state_dir / "state.json").unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m local_stack")
    parser.add_argument("command", choices=["up", "down", "serve", "demo"])
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    parser.add_argument("--instances", type=int, default=2)
    parser.add_argument("--slots", type=int, default=None)
    args = parser.parse_args()
    if args.command == "up":
        print(json.dumps(up(args.state_dir, args.instances, args.slots)))
    elif args.command == "down":
        down(args.state_dir)
    elif args.command == "serve":
        from local_stack.server import serve

        serve(args.state_dir, args.instances, args.slots)
    else:
        from local_stack.demo import run_demo

        sys.exit(run_demo(args.state_dir))


if __name__ == "__main__":
    main()
