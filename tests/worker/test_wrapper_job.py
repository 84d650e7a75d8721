"""The job process: streaming, bounded capture, result pipe, stopping. Real processes, no AWS."""

from __future__ import annotations

import io
import os
import signal
import sys
import time
from pathlib import Path

import pytest
from wrapper_harness import wait_until

from callback_wrapper.job import LOG_TAIL_BYTES, Job
from callback_wrapper.jsonlog import LockedStream
from callback_wrapper.outcome import CAPTURE_CAP_BYTES, JobEnd, StopReason


class Sinks:
    def __init__(self) -> None:
        self.stdout, self.stderr = io.BytesIO(), io.BytesIO()

    def start(self, *argv: str, grace: int = 5) -> Job:
        return Job.start(argv, dict(os.environ), LockedStream(self.stdout), LockedStream(self.stderr), grace)


@pytest.fixture
def sinks() -> Sinks:
    return Sinks()


def python(code: str) -> tuple[str, ...]:
    return (sys.executable, "-c", code)


def test_output_streams_through_and_is_captured(sinks: Sinks) -> None:
    end = sinks.start("sh", "-c", "echo out1; echo err1 >&2; echo '{\"a\": 1}'").wait()

    assert end.exit_code == 0
    assert sinks.stdout.getvalue() == b'out1\n{"a": 1}\n'
    assert sinks.stderr.getvalue() == b"err1\n"
    assert end.last_stdout_line.data == b'{"a": 1}\n'
    assert "out1\n" in end.log_tail
    assert "err1\n" in end.log_tail


def test_last_line_skips_blank_lines_and_counts_an_unterminated_one(sinks: Sinks) -> None:
    assert sinks.start("sh", "-c", "echo first; echo; echo '   '").wait().last_stdout_line.data == b"first\n"
    assert sinks.start("printf", "a\nlast").wait().last_stdout_line.data == b"last"


def test_a_long_last_line_is_capped_but_counted(sinks: Sinks) -> None:
    size = CAPTURE_CAP_BYTES + 1000
    end = sinks.start(*python(f"print('{{' + 'x' * {size - 1})")).wait()

    assert end.last_stdout_line.truncated
    assert end.last_stdout_line.size == size + 1  # with its newline
    assert len(end.last_stdout_line.data) == CAPTURE_CAP_BYTES


def test_log_tail_is_bounded_and_keeps_the_end(sinks: Sinks) -> None:
    end = sinks.start(*python("for n in range(20000): print('line', n)\nprint('THE END')")).wait()

    assert len(end.log_tail.encode()) <= LOG_TAIL_BYTES
    assert end.log_tail.endswith("THE END\n")


def test_result_file_is_read_then_removed(sinks: Sinks) -> None:
    job = sinks.start("sh", "-c", """printf '{"output": {}}' > "$JOB_RESULT_PATH"; echo "$JOB_RESULT_PATH" """)
    end = job.wait()

    assert end.result.data == b'{"output": {}}'
    assert not Path(end.last_stdout_line.data.decode().strip()).exists()


def test_a_removed_result_file_means_no_result(sinks: Sinks) -> None:
    assert sinks.start("sh", "-c", 'rm "$JOB_RESULT_PATH"').wait().result.size == 0


def test_killed_job_reports_128_plus_the_signal(sinks: Sinks) -> None:
    assert sinks.start("sh", "-c", "kill -SEGV $$").wait().exit_code == 128 + signal.SIGSEGV


def test_stop_sends_sigterm_to_the_whole_group(sinks: Sinks, tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild"
    job = sinks.start("sh", "-c", f"sleep 60 & echo $! > {pid_file}; wait")
    grandchild = int(wait_until(lambda: pid_file.exists() and pid_file.read_text().strip(), 10, "the grandchild"))

    job.stop(StopReason.TASK_CLOSED)
    end = job.wait()

    assert end.exit_code == 128 + signal.SIGTERM
    assert job.stop_reason is StopReason.TASK_CLOSED
    assert_gone(grandchild)


def test_stop_escalates_to_sigkill_after_the_grace(sinks: Sinks) -> None:
    ignore_sigterm = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('ready', flush=True)"
    job = sinks.start(*python(ignore_sigterm + "\ntime.sleep(60)"), grace=1)
    wait_until(lambda: b"ready" in sinks.stdout.getvalue(), 10, "the job to ignore SIGTERM")

    started = time.monotonic()
    job.stop(StopReason.TERMINATED)
    job.stop(StopReason.TASK_CLOSED)  # the first reason wins
    end: JobEnd = job.wait()

    assert end.exit_code == 128 + signal.SIGKILL
    assert 1 <= time.monotonic() - started < 10
    assert job.stop_reason is StopReason.TERMINATED


def test_stopping_a_job_that_has_ended_does_nothing(sinks: Sinks) -> None:
    """A heartbeat may find the task closed while a large output is being stored, after the
    job's process is gone and its group id may be another process's."""
    job = sinks.start("true")
    job.wait()

    job.stop(StopReason.TASK_CLOSED)

    assert job.stop_reason is None


def test_leftovers_of_a_finished_job_are_killed(sinks: Sinks, tmp_path: Path) -> None:
    """A background process holding stdout would otherwise keep the job 'running'."""
    pid_file = tmp_path / "leftover"

    started = time.monotonic()
    end = sinks.start("sh", "-c", f"sleep 60 & echo $! > {pid_file}").wait()

    assert end.exit_code == 0
    assert time.monotonic() - started < 4
    assert_gone(int(pid_file.read_text()))


def assert_gone(pid: int) -> None:
    # Not our child, so not reaped by us: gone, or a zombie waiting for init.
    def gone() -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
        except FileNotFoundError:
            return True

    wait_until(gone, 10, f"process {pid} to end")
