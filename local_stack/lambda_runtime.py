"""Run our Lambda functions' real code for moto's Lambda, in processes of their own.

moto's "simple" Lambda backend echoes payloads; `install()` makes its invoke run the
function's handler instead, in a warm worker process per concurrent invocation (as Lambda
keeps execution environments), with the function's own environment and code directory.
A handler's exception comes back as Lambda reports it: an `Unhandled` function error whose
`errorType` is the exception's class name, which is what the state machine's Retry and
Catch match.

`python -m local_stack.lambda_runtime CODE_DIR HANDLER` is the worker: JSON lines in on stdin,
JSON lines out on the original stdout; the handler's own prints and logs go to stderr.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from moto.awslambda_simple.models import LambdaSimpleBackend


@dataclass
class Context:
    """The parts of Lambda's context object our handlers and Powertools use."""

    function_name: str
    memory_limit_in_mb: int
    invoked_function_arn: str
    aws_request_id: str
    deadline: float
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = ""

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


# Worker processes per function at most: each costs a Python start with boto3 and Powertools
# (about 1.5 CPU-seconds, 90 MB), so a burst of hundreds of invocations (a fleet's queue retrying)
# would start hundreds on one machine. Beyond this, invocations wait for a free worker, as they
# would queue behind a concurrency limit (AWS would throttle them; the state machine retries).
MAX_WORKERS = int(os.environ.get("RUN_JOB_LAMBDA_CONCURRENCY", "8"))


class FunctionWorkers:
    """Warm worker processes for one function; one invocation per worker at a time."""

    def __init__(self, name: str, code_dir: Path, handler: str, env: dict[str, str], log: IO[str]) -> None:
        self.name, self.code_dir, self.handler, self.env, self.log = name, code_dir, handler, env, log
        self._idle: list[subprocess.Popen[str]] = []
        self._all: list[subprocess.Popen[str]] = []
        self._lock = threading.Lock()
        self._concurrency = threading.BoundedSemaphore(MAX_WORKERS)

    def _start(self) -> subprocess.Popen[str]:
        worker = subprocess.Popen(
            [sys.executable, "-m", "local_stack.lambda_runtime", str(self.code_dir), self.handler],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env=self.env,
            cwd=Path(__file__).resolve().parent.parent,
        )
        self._all.append(worker)
        return worker

    def invoke(self, event: bytes, timeout_seconds: int) -> tuple[bool, bytes]:
        with self._concurrency:
            return self._invoke(event, timeout_seconds)

    def _invoke(self, event: bytes, timeout_seconds: int) -> tuple[bool, bytes]:
        with self._lock:
            worker = self._idle.pop() if self._idle else self._start()
        request = {"event": json.loads(event or b"{}"), "timeout": timeout_seconds, "requestId": str(uuid.uuid4())}
        if worker.stdin is None or worker.stdout is None:  # always pipes: _start asks for them
            raise RuntimeError("worker without pipes")
        worker.stdin.write(json.dumps(request) + "\n")
        worker.stdin.flush()
        line = worker.stdout.readline()
        if not line:  # the worker died: Lambda reports the runtime exiting
            return False, json.dumps({"errorType": "Runtime.ExitError", "errorMessage": "runtime exited"}).encode()
        with self._lock:
            self._idle.append(worker)
        reply = json.loads(line)
        return reply["ok"], json.dumps(reply["payload"]).encode()

    def stop(self) -> None:
        for worker in self._all:
            worker.kill()
            worker.wait()


_functions: dict[str, FunctionWorkers] = {}


def register(workers: FunctionWorkers) -> None:
    _functions[workers.name] = workers


def stop_all() -> None:
    for workers in _functions.values():
        workers.stop()
    _functions.clear()


def _invoke(
    self: LambdaSimpleBackend, function_name: str, qualifier: str | None, body: Any, headers: Any, response_headers: Any
) -> bytes:
    name = function_name.split(":function:")[-1].split(":")[0]
    workers = _functions[name]
    timeout = int(self.get_function(name, qualifier).timeout)
    ok, payload = workers.invoke(body if isinstance(body, bytes) else str(body or "{}").encode(), timeout)
    if not ok:
        response_headers["x-amz-function-error"] = "Unhandled"
    return payload


def install() -> None:
    LambdaSimpleBackend.invoke = _invoke  # type: ignore[method-assign]


def _serve(code_dir: str, handler_path: str) -> None:
    protocol = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # the handler's prints (Powertools logs) go to the function's log
    sys.path.insert(0, code_dir)
    module_name, function_name = handler_path.rsplit(".", 1)
    handler: Callable[[Any, Context], Any] = getattr(importlib.import_module(module_name), function_name)
    name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", module_name)
    for line in sys.stdin:
        request = json.loads(line)
        context = Context(
            function_name=name,
            memory_limit_in_mb=int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")),
            invoked_function_arn=os.environ.get("RUN_JOB_FUNCTION_ARN", name),
            aws_request_id=request["requestId"],
            deadline=time.monotonic() + request["timeout"],
        )
        try:
            reply = {"ok": True, "payload": handler(request["event"], context)}
        except Exception as exc:
            reply = {
                "ok": False,
                "payload": {
                    "errorType": type(exc).__name__,
                    "errorMessage": str(exc),
                    "stackTrace": traceback.format_tb(exc.__traceback__),
                },
            }
        protocol.write(json.dumps(reply) + "\n")
        protocol.flush()


if __name__ == "__main__":
    _serve(sys.argv[1], sys.argv[2])
