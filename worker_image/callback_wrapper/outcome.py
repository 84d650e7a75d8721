"""What the wrapper tells Step Functions once the job has ended: pure decisions, no I/O."""

from __future__ import annotations

import enum
import hashlib
import json
import re
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

# Step Functions' limits: SendTaskSuccess output (bytes) and SendTaskFailure cause (chars).
MAX_OUTPUT_BYTES = 262_144
MAX_CAUSE_CHARS = 32_768
# The largest output at all: over MAX_OUTPUT_BYTES it is written to the output bucket and the
# task output points to it. The bound is memory: once the job has ended the wrapper holds the
# output a few times over (as read, parsed, re-encoded), inside the job's memory limit.
MAX_STORED_OUTPUT_BYTES = 64 * 1024 * 1024
# A job's result or last stdout line is read up to this many bytes. Whatever is longer as
# written is too large, even if compacting it would shrink it under MAX_STORED_OUTPUT_BYTES:
# reading further would only hold more memory for an output that is all but certainly too large.
CAPTURE_CAP_BYTES = MAX_STORED_OUTPUT_BYTES

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_SIGNAL_UNDELIVERED = 75  # sysexits EX_TEMPFAIL: the host guard must not report success
EXIT_CANNOT_EXECUTE = 126  # shell conventions for a command that could not start
EXIT_NOT_FOUND = 127
EXIT_KILLED = 128 + signal.SIGKILL
EXIT_STOPPED = 128 + signal.SIGTERM

JOB_FAILED = "Job.Failed"
JOB_OUTPUT_TOO_LARGE = "Job.OutputTooLarge"
# Prefixes that belong to the platform (Job.*) and to Step Functions (States.*).
RESERVED_ERROR_PREFIXES = ("Job.", "States.")
_ERROR_NAME = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+")
_MAX_ERROR_CHARS = 256
# Even fully escaped (6 chars each), a message this long leaves room in a cause for the
# job id and the log group (at most 128 and 512 plain chars, see settings) and the start of
# the log tail.
_MAX_MESSAGE_CHARS = 2_048


class StopReason(enum.Enum):
    TASK_CLOSED = "task-closed"  # a heartbeat said the task is over: nobody is listening
    TERMINATED = "terminated"  # the wrapper got SIGTERM/SIGINT (docker stop)


@dataclass(frozen=True)
class Captured:
    """The first bytes of a stream, and how many bytes it had in all."""

    data: bytes = b""
    size: int = 0

    @property
    def truncated(self) -> bool:
        return self.size > len(self.data)


@dataclass(frozen=True)
class JobEnd:
    exit_code: int  # 128 + N when the job was killed by signal N, as a shell reports it
    result: Captured  # what the job wrote to JOB_RESULT_PATH (size 0: nothing)
    last_stdout_line: Captured  # the last non-blank line of stdout
    log_tail: str  # the end of stdout and stderr, interleaved


@dataclass(frozen=True)
class JobContext:
    """What the environment tells the wrapper about where a job's things go."""

    job_id: str
    output_bucket: str | None = None  # outputs over MAX_OUTPUT_BYTES go here; None: they fail
    log_group: str | None = None  # the job's CloudWatch log group (awslogs); None: not known here

    @property
    def output_key(self) -> str:
        return f"outputs/{self.job_id}.json"  # the only prefix the worker role may write to

    @property
    def log_location(self) -> dict[str, str] | None:
        """Where the job's full log is: the host side names the stream after the job id."""
        if self.log_group is None:
            return None
        return {"logGroup": self.log_group, "logStream": self.job_id}


@dataclass(frozen=True)
class Success:
    output: str  # compact JSON object, at most MAX_OUTPUT_BYTES bytes of UTF-8


@dataclass(frozen=True)
class StoredOutput:
    """An output over MAX_OUTPUT_BYTES, to be written to s3://bucket/key; the task's output is
    then a pointer to it."""

    bucket: str
    key: str
    body: bytes = field(repr=False)  # compact JSON object, UTF-8

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @cached_property
    def sha256(self) -> bytes:
        return hashlib.sha256(self.body).digest()

    def pointer(self) -> Success:
        """The task output once the object is written: small whatever the output's size."""
        location = {"bucket": self.bucket, "key": self.key, "uri": self.uri}
        return Success(compact_json({"outputLocation": location, "bytes": len(self.body), "sha256": self.sha256.hex()}))


@dataclass(frozen=True)
class Failure:
    error: str
    cause: str


@dataclass(frozen=True)
class Decision:
    signal: Success | Failure | None  # None: send nothing
    exit_code: int
    # Written before the signal, which points to it; if it cannot be: output_not_stored().
    store: StoredOutput | None = None


class OutputTooLarge(Exception):
    def __init__(self, size_bytes: int) -> None:
        super().__init__(f"the job's output is {size_bytes} bytes")
        self.size_bytes = size_bytes


class InvalidResult(Exception):
    """What the job wrote to JOB_RESULT_PATH does not follow the protocol, or its output is not JSON."""


@dataclass(frozen=True)
class DeclaredError:
    name: str
    cause: str | None


def compact_json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def encode_output(output: Mapping[str, Any], job: JobContext) -> Success | StoredOutput:
    """The output as Step Functions will receive it, or as it is stored when it is over Step
    Functions' limit and the job has an output bucket; the one place its size is checked."""
    try:
        encoded = compact_json(output)
    except ValueError as exc:  # NaN or Infinity: Python's parser takes them, JSON has no such numbers
        raise InvalidResult(f"the job's output is not JSON: {exc}") from exc
    body = encoded.encode("utf-8")
    if len(body) <= MAX_OUTPUT_BYTES:
        return Success(encoded)
    if job.output_bucket is None or len(body) > MAX_STORED_OUTPUT_BYTES:
        raise OutputTooLarge(len(body))
    return StoredOutput(job.output_bucket, job.output_key, body)


def too_large_message(size_bytes: int, job: JobContext) -> str:
    if job.output_bucket is None:
        return (
            f"the job's output is {size_bytes} bytes; Step Functions accepts at most {MAX_OUTPUT_BYTES} "
            "and no OUTPUT_BUCKET is set for larger outputs"
        )
    return (
        f"the job's output is {size_bytes} bytes; at most {MAX_STORED_OUTPUT_BYTES} are written to "
        f"s3://{job.output_bucket}/ (over {MAX_OUTPUT_BYTES})"
    )


def output_from_stdout(last_line: Captured) -> dict[str, Any]:
    """A command's output: its last stdout line if that is a JSON object, else its exit code."""
    text = last_line.data.strip()
    if last_line.truncated:
        if text.startswith(b"{"):
            raise OutputTooLarge(last_line.size)
        return {"exitCode": 0}
    try:
        parsed = json.loads(text)
    except ValueError:
        return {"exitCode": 0}
    return parsed if isinstance(parsed, dict) else {"exitCode": 0}


def parse_result(result: Captured) -> dict[str, Any] | DeclaredError | None:
    """Decode JOB_RESULT_PATH: {"output": {...}} or {"error": "Prefix.Name", "cause"?: "..."}."""
    if result.size == 0:
        return None
    if result.truncated:
        raise OutputTooLarge(result.size)
    try:
        message = json.loads(result.data)
    except ValueError as exc:
        raise InvalidResult(f"the job's result is not JSON: {exc}") from exc
    if isinstance(message, dict) and message.keys() == {"output"}:
        output = message["output"]
        if not isinstance(output, dict):
            raise InvalidResult("the job's result has an output that is not a JSON object")
        return output
    if isinstance(message, dict) and message.keys() in ({"error"}, {"error", "cause"}):
        name, cause = message["error"], message.get("cause")
        if isinstance(name, str) and (cause is None or isinstance(cause, str)):
            return DeclaredError(name, cause)
    raise InvalidResult('the job\'s result must be {"output": {...}} or {"error": "Prefix.Name", "cause": "..."}')


def refusal_of_error_name(name: str) -> str | None:
    """Why a job may not use this error name, or None when it may."""
    if name.startswith(RESERVED_ERROR_PREFIXES):
        return f"error names starting with {' or '.join(RESERVED_ERROR_PREFIXES)} are reserved"
    if len(name) > _MAX_ERROR_CHARS or not _ERROR_NAME.fullmatch(name):
        return "an error name must look like Prefix.Name (letters, digits, _ and -)"
    return None


def build_cause(job: JobContext, exit_code: int, log_tail: str, message: str | None = None) -> str:
    """The cause of a failure: JSON {"jobId", "exitCode", "message"?, "logLocation"?, "logTail"}
    that fits MAX_CAUSE_CHARS, with the longest END of the log tail that fits (where errors
    show); logLocation says where the full log is, when the environment tells."""
    fields: dict[str, object] = {"jobId": job.job_id, "exitCode": exit_code}
    if message is not None:
        fields["message"] = message[:_MAX_MESSAGE_CHARS]
    if job.log_location is not None:
        fields["logLocation"] = job.log_location

    def cause_from(start: int) -> str:
        return json.dumps({**fields, "logTail": log_tail[start:]}, ensure_ascii=False)

    # A shorter tail gives a shorter cause, so bisect for the earliest start that fits
    # (escaping makes a char cost 1 to 6, so the length cannot be computed up front).
    # The empty tail always fits: the other fields are bounded (the log group by settings).
    low, high = max(0, len(log_tail) - MAX_CAUSE_CHARS), len(log_tail)
    while low < high:
        middle = (low + high) // 2
        if len(cause_from(middle)) <= MAX_CAUSE_CHARS:
            high = middle
        else:
            low = middle + 1
    return cause_from(low)


def decide(end: JobEnd, job: JobContext, stop: StopReason | None) -> Decision:
    if stop is StopReason.TASK_CLOSED:
        return Decision(None, EXIT_STOPPED)
    if stop is StopReason.TERMINATED:
        # Whoever stopped the container knows why and signals: the host guard (a cancelled
        # command: Job.Cancelled), the reaper (a lost host: Job.HostLost, retried), or nobody
        # (the execution already ended). A Job.Cancelled from here would win the race and
        # turn a retryable host loss into a final cancel.
        return Decision(None, EXIT_STOPPED)
    if end.exit_code == EXIT_KILLED:
        # Most likely the kernel's OOM killer. Only the host sees docker's OOMKilled flag and
        # can tell Job.OutOfMemory from Job.Failed, so the host guard signals this one.
        return Decision(None, EXIT_KILLED)

    failed_exit = end.exit_code or EXIT_FAILED
    try:
        result = parse_result(end.result)
        if isinstance(result, DeclaredError):
            return Decision(_declared_failure(result, end, job), failed_exit)
        if end.exit_code != 0:
            return Decision(_job_failed(end, job), failed_exit)
        output = result if result is not None else output_from_stdout(end.last_stdout_line)
        encoded = encode_output(output, job)
    except OutputTooLarge as exc:
        cause = build_cause(job, end.exit_code, end.log_tail, too_large_message(exc.size_bytes, job))
        return Decision(Failure(JOB_OUTPUT_TOO_LARGE, cause), failed_exit)
    except InvalidResult as exc:
        return Decision(_job_failed(end, job, str(exc)), failed_exit)
    if isinstance(encoded, StoredOutput):
        return Decision(encoded.pointer(), EXIT_OK, store=encoded)
    return Decision(encoded, EXIT_OK)


def output_not_stored(stored: StoredOutput, end: JobEnd, job: JobContext, reason: str) -> Decision:
    """The job succeeded but its large output could not be written: the task fails (its output
    is lost), and the cause says why."""
    message = f"the job's output ({len(stored.body)} bytes) could not be written to {stored.uri}: {reason}"
    return Decision(_job_failed(end, job, message), EXIT_FAILED)


def _job_failed(end: JobEnd, job: JobContext, message: str | None = None) -> Failure:
    return Failure(JOB_FAILED, build_cause(job, end.exit_code, end.log_tail, message))


def _declared_failure(declared: DeclaredError, end: JobEnd, job: JobContext) -> Failure:
    refusal = refusal_of_error_name(declared.name)
    if refusal is not None:
        return _job_failed(end, job, f"the job declared error {declared.name!r}: {refusal}")
    if declared.cause is None:
        return Failure(declared.name, build_cause(job, end.exit_code, end.log_tail))
    return Failure(declared.name, declared.cause[:MAX_CAUSE_CHARS])
