"""The callback wrapper's main: run the job, heartbeat while it runs, signal once."""

from __future__ import annotations

import os
import re
import signal
import sys
from collections.abc import Mapping, Sequence
from types import FrameType

from . import outputs
from .job import Job
from .jsonlog import JsonLog, LockedStream
from .outcome import (
    EXIT_CANNOT_EXECUTE,
    EXIT_KILLED,
    EXIT_NOT_FOUND,
    EXIT_SIGNAL_UNDELIVERED,
    EXIT_USAGE,
    Captured,
    JobEnd,
    StopReason,
    Success,
    decide,
    output_not_stored,
)
from .settings import ConfigError, Settings, settings_from_env
from .stepfunctions import HEARTBEAT_CONFIG, SIGNAL_CONFIG, Heartbeats, make_client, send_signal

USAGE = """\
usage: python -m callback_wrapper --job module:function
       python -m callback_wrapper -- command [argument ...]
"""
_JOB_TARGET = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")


def job_command(args: Sequence[str]) -> list[str] | None:
    """The argv of the job's process, or None when the arguments are not understood."""
    if len(args) == 2 and args[0] == "--job" and _JOB_TARGET.fullmatch(args[1]):
        # -u: the job's prints reach the logs (and the log tail) as they happen.
        return [sys.executable, "-u", "-m", "callback_wrapper.run_function", args[1]]
    if len(args) >= 2 and args[0] == "--":
        return list(args[1:])
    return None


def job_environment(env: Mapping[str, str], settings: Settings) -> dict[str, str]:
    """The job's environment: the container's, less the task token (the wrapper signals
    for the job, so the job never needs it), with the input path made explicit."""
    job_env = {name: value for name, value in env.items() if name != "TASK_TOKEN"}
    job_env["JOB_INPUT_PATH"] = settings.input_path
    return job_env


def main(args: Sequence[str]) -> int:
    stdout = LockedStream(sys.stdout.buffer)
    stderr = LockedStream(sys.stderr.buffer)
    command = job_command(args)
    if command is None:
        stderr.write(USAGE.encode("utf-8"))
        return EXIT_USAGE
    try:
        settings = settings_from_env(os.environ)
    except ConfigError as exc:
        JsonLog(stderr, job_id=None, token=None).error("bad environment", message=str(exc))
        return EXIT_USAGE

    log = JsonLog(stderr, settings.job_id, settings.task_token)
    signal_client = make_client(settings, SIGNAL_CONFIG)
    env = job_environment(os.environ, settings)
    heartbeats = None
    try:
        job = Job.start(command, env, stdout, stderr, settings.stop_grace_seconds)
    except OSError as exc:
        message = f"cannot start the job: {exc}"
        log.error("job did not start", message=message)
        exit_code = EXIT_NOT_FOUND if isinstance(exc, FileNotFoundError) else EXIT_CANNOT_EXECUTE
        end = JobEnd(exit_code, Captured(), Captured(), log_tail=message)
        stop = None
    else:
        heartbeats = _start(job, settings, log, command)
        end, stop = job.wait(), job.stop_reason

    decision = decide(end, settings.context, stop)
    log.info("job ended", exitCode=end.exit_code, stopReason=stop.value if stop else None)
    if decision.store is not None:
        # Heartbeats go on meanwhile: a large upload, retried, may outlast the heartbeat timeout.
        problem = outputs.put_output(outputs.make_client(settings), decision.store, log)
        if problem is not None:
            decision = output_not_stored(decision.store, end, settings.context, problem)
    if heartbeats is not None:
        # Before the signal: a heartbeat after it would be answered "task closed".
        heartbeats.stop()
    if decision.signal is None:
        if decision.exit_code == EXIT_KILLED:
            log.warning("job killed by SIGKILL (out of memory?): the host guard signals")
        return decision.exit_code
    delivered = send_signal(signal_client, settings.task_token, decision.signal, log)
    if not delivered and isinstance(decision.signal, Success):
        return EXIT_SIGNAL_UNDELIVERED
    return decision.exit_code


def _start(job: Job, settings: Settings, log: JsonLog, command: Sequence[str]) -> Heartbeats | None:
    """Route SIGTERM/SIGINT to the job and start the heartbeats (None: the task has none)."""

    def terminate(signum: int, frame: FrameType | None) -> None:
        job.stop(StopReason.TERMINATED)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, terminate)
    log.info("job started", command=list(command), pid=job.pid)

    interval = settings.heartbeat_interval
    heartbeats = None
    if interval is not None:
        heartbeats = Heartbeats(
            make_client(settings, HEARTBEAT_CONFIG),
            settings.task_token,
            interval,
            log,
            on_task_closed=lambda: job.stop(StopReason.TASK_CLOSED),
        )
        heartbeats.start()
    return heartbeats
