"""The wrapper's own log: JSON lines on stderr, sharing the stream with the job's stderr."""

from __future__ import annotations

import datetime
import hashlib
import json
import threading
from typing import BinaryIO


def token_hash(token: str) -> str:
    """What logs show instead of the task token (the job table's `tokenHash`)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()[:12]


class LockedStream:
    """A binary stream written whole-chunk at a time from several threads, so the job's
    lines and the wrapper's log lines never splice into each other."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def write(self, data: bytes) -> None:
        with self._lock:
            self._stream.write(data)
            self._stream.flush()


class JsonLog:
    def __init__(self, sink: LockedStream, job_id: str | None, token: str | None) -> None:
        self._sink = sink
        self._context: dict[str, str] = {}
        if job_id is not None:
            self._context["jobId"] = job_id
        if token is not None:
            self._context["tokenHash"] = token_hash(token)
        self._token = token

    def info(self, event: str, **fields: object) -> None:
        self._emit("info", event, fields)

    def warning(self, event: str, **fields: object) -> None:
        self._emit("warning", event, fields)

    def error(self, event: str, **fields: object) -> None:
        self._emit("error", event, fields)

    def _emit(self, level: str, event: str, fields: dict[str, object]) -> None:
        record = {
            "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds"),
            "level": level,
            "event": event,
            **self._context,
            **fields,
        }
        line = json.dumps(record, ensure_ascii=False, default=str)
        if self._token:
            # Last line of defence: service error messages are logged as they come, and
            # the token must not reach a log even if a service echoes it.
            line = line.replace(self._token, "[task token]")
        self._sink.write(line.encode("utf-8") + b"\n")
