"""The job as a child process: started in its own process group, its output streamed to
the container's stdout/stderr and captured (bounded) for the outcome, stopped on request."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import threading
from collections.abc import Mapping, Sequence
from typing import BinaryIO

from .jsonlog import LockedStream
from .outcome import CAPTURE_CAP_BYTES, Captured, JobEnd, StopReason

LOG_TAIL_BYTES = 64 * 1024  # more than a cause can hold (32,768 chars): build_cause cuts it
_READ_BYTES = 64 * 1024
# After the job's main process exits, how long its output pipes may take to drain (a
# process that left the job's group can hold them open forever).
_DRAIN_SECONDS = 5.0


class _Tail:
    """The last LOG_TAIL_BYTES of stdout and stderr, interleaved as they arrived."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._lock = threading.Lock()

    def append(self, piece: bytes) -> None:
        with self._lock:
            self._buffer += piece
            del self._buffer[:-LOG_TAIL_BYTES]

    def text(self) -> str:
        with self._lock:
            return self._buffer.decode("utf-8", errors="replace")


class _LastLine:
    """The last non-blank line of a stream, its first CAPTURE_CAP_BYTES kept."""

    def __init__(self) -> None:
        self._line = bytearray()
        self._line_size = 0
        self.last = Captured()

    def feed(self, piece: bytes) -> None:
        self._line += piece[: max(0, CAPTURE_CAP_BYTES - len(self._line))]
        self._line_size += len(piece)
        if piece.endswith(b"\n"):
            self.end_line()

    def end_line(self) -> None:
        if self._line.strip():
            self.last = Captured(bytes(self._line), self._line_size)
        self._line = bytearray()
        self._line_size = 0


class Job:
    def __init__(
        self,
        process: subprocess.Popen[bytes],
        readers: list[threading.Thread],
        tail: _Tail,
        last_line: _LastLine,
        result_path: str,
        stop_grace_seconds: int,
    ) -> None:
        self._process = process
        self._readers = readers
        self._tail = tail
        self._last_line = last_line
        self._result_path = result_path
        self._stop_grace_seconds = stop_grace_seconds
        # Re-entrant: stop() runs in a signal handler, which may interrupt this same thread
        # while it holds the lock.
        self._lock = threading.RLock()
        self._stop_reason: StopReason | None = None
        self._kill_timer: threading.Timer | None = None
        self._ended = False

    @classmethod
    def start(
        cls,
        argv: Sequence[str],
        env: Mapping[str, str],
        stdout: LockedStream,
        stderr: LockedStream,
        stop_grace_seconds: int,
    ) -> Job:
        """Start the job; JOB_RESULT_PATH in its environment names an empty file it may
        write its result to. Raises OSError when the job cannot be started."""
        # A file, not a pipe: any language and any shell can write to a path.
        result_fd, result_path = tempfile.mkstemp(prefix="job-result-", suffix=".json")
        os.close(result_fd)
        try:
            process = subprocess.Popen(
                argv,
                env={**env, "JOB_RESULT_PATH": result_path},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                # Its own group: stopping the job reaches the processes it started too.
                start_new_session=True,
            )
        except OSError:
            os.unlink(result_path)
            raise
        assert process.stdout is not None
        assert process.stderr is not None
        tail, last_line = _Tail(), _LastLine()
        readers = [
            threading.Thread(target=_pump, args=(process.stdout, stdout, tail, last_line), daemon=True),
            threading.Thread(target=_pump, args=(process.stderr, stderr, tail, None), daemon=True),
        ]
        for reader in readers:
            reader.start()
        return cls(process, readers, tail, last_line, result_path, stop_grace_seconds)

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def stop_reason(self) -> StopReason | None:
        with self._lock:
            return self._stop_reason

    def stop(self, reason: StopReason) -> None:
        """SIGTERM the job's group now, SIGKILL it after the grace. Safe from any thread and
        from a signal handler; the first reason wins. Once the job has ended it does nothing:
        its process group id may belong to another process by then."""
        with self._lock:
            if self._stop_reason is not None or self._ended:
                return
            self._stop_reason = reason
            self._kill_timer = threading.Timer(self._stop_grace_seconds, self._signal_group, (signal.SIGKILL,))
            self._kill_timer.daemon = True
        self._signal_group(signal.SIGTERM)
        self._kill_timer.start()

    def wait(self) -> JobEnd:
        returncode = self._process.wait()
        with self._lock:
            self._ended = True
            if self._kill_timer is not None:
                self._kill_timer.cancel()
        # The job is over when its main process is: leftovers in its group go too, which
        # also closes the pipes they inherited.
        self._signal_group(signal.SIGKILL)
        for reader in self._readers:
            reader.join(_DRAIN_SECONDS)
        self._last_line.end_line()
        return JobEnd(
            exit_code=returncode if returncode >= 0 else 128 - returncode,
            result=self._take_result(),
            last_stdout_line=self._last_line.last,
            log_tail=self._tail.text(),
        )

    def _take_result(self) -> Captured:
        """The result file's first CAPTURE_CAP_BYTES and its size; the file is removed."""
        try:
            with open(self._result_path, "rb") as file:
                return Captured(file.read(CAPTURE_CAP_BYTES), os.fstat(file.fileno()).st_size)
        except FileNotFoundError:
            return Captured()  # the job removed it: no result
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._result_path)

    def _signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):  # the group is already gone
            os.killpg(self._process.pid, signum)


def _pump(source: BinaryIO, sink: LockedStream, tail: _Tail, last_line: _LastLine | None) -> None:
    # Line by line (long lines in pieces), so each write to the shared stream is whole lines.
    with source:
        for piece in iter(lambda: source.readline(_READ_BYTES), b""):
            sink.write(piece)
            tail.append(piece)
            if last_line is not None:
                last_line.feed(piece)
