"""Example job: sha256 and byte length of the input, both as the job sees it (re-serialised
compactly, as the job table stores it) and as the raw file the host wrote, which lets an
end-to-end test prove a large input arrives byte for byte.

Test switches, applied in this order:
  {"allocateMiB": n}   hold n MiB of memory (a memory limit below that is an OOM kill)
  {"sleepSeconds": n}  run for n seconds
  {"freeze": true}     stop the wrapper and this job (SIGSTOP), as a hung host would:
                       heartbeats stop and Step Functions times the task out
  {"exitCode": n}      log a line and exit with code n (non-zero: Job.Failed)
  {"outputBytes": n}   add "filler", n bytes of text, to the output (over 256 KiB, the output
                       goes to the output bucket and the task output points to it)

    python -m callback_wrapper --job examples.checksum:run
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import time
from typing import Any

MIB = 1024 * 1024


def _digest(data: bytes) -> dict[str, Any]:
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def run(job_input: dict[str, Any]) -> dict[str, Any]:
    with open(os.environ["JOB_INPUT_PATH"], "rb") as file:
        raw = file.read()
    compact = json.dumps(job_input, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    # Filled bytes, one MiB at a time: untouched pages would not count against the limit.
    held = [b"\x01" * MIB for _ in range(int(job_input.get("allocateMiB", 0)))]
    time.sleep(float(job_input.get("sleepSeconds", 0)))
    if job_input.get("freeze"):
        # The wrapper is this job's parent; its heartbeat thread stops with it.
        os.kill(os.getppid(), signal.SIGSTOP)
        os.killpg(os.getpgid(0), signal.SIGSTOP)
    exit_code = int(job_input.get("exitCode", 0))
    if exit_code:
        print(f"checksum: exiting with code {exit_code} as the input asks", file=sys.stderr)
        sys.exit(exit_code)
    output: dict[str, Any] = {"input": _digest(compact), "file": _digest(raw), "heldMiB": len(held)}
    filler_bytes = int(job_input.get("outputBytes", 0))
    if filler_bytes:
        output["filler"] = "x" * filler_bytes
    return output
