"""The local agent: what the SSM agent does for commands of our documents, on this machine.

moto accepts a command (local_stack/moto_fixes.py checks its parameters against the
document); the agent then runs it for each target instance: ENV_VAR parameters become
`SSM_<name>` variables, the others are pasted into the text as SSM does, every
`aws:runShellScript` step runs under bash, and the invocation's status (Pending, InProgress,
Success, Failed, TimedOut, Cancelled), exit code and output (cut as SSM's API cuts it) are
kept on moto's command. `executionTimeout` and CancelCommand stop the script with SIGTERM,
then SIGKILL after a grace, as the SSM agent does.

Each instance gets its own working directory (its RUN_JOB_ROOT), so many emulated instances
share one machine and one container engine without seeing each other's jobs.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from moto.ssm.models import Command

# GetCommandInvocation returns at most this much of each stream (AWS API reference).
STDOUT_LIMIT = 24_000
STDERR_LIMIT = 8_000
STOP_GRACE_SECONDS = 30
PARAMETER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
StatusListener = Callable[[Command, dict[str, Any]], None]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class Invocation:
    """One command on one instance."""

    def __init__(self, command: Command, record: dict[str, Any], workdir: Path) -> None:
        self.command, self.record, self.workdir = command, record, workdir
        self.process: subprocess.Popen[bytes] | None = None
        self.final_status: str | None = None
        self.lock = threading.Lock()

    def stop(self, status: str) -> None:
        """SIGTERM the script (its trap stops the container), SIGKILL its group after a grace."""
        with self.lock:
            if self.final_status is None:
                self.final_status = status
            process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


class LocalAgent:
    def __init__(
        self, root: Path, env: dict[str, str], listener: StatusListener | None, hung: Callable[[str], bool]
    ) -> None:
        self.root = root
        self.env = env
        self.listener = listener
        self.invocations: dict[tuple[str, str], Invocation] = {}
        self.threads: list[threading.Thread] = []
        # Instances tagged run-job:local-agent=hung take commands but never run them, as an
        # agent that stopped answering: SSM then times the delivery out.
        self.hung = hung

    # moto_fixes.command_sink
    def accept(self, command: Command) -> None:
        command.cancel = self.cancel  # type: ignore[attr-defined]
        for record in command.invocations:
            instance_id = record["InstanceId"]
            workdir = self.root / instance_id
            invocation = Invocation(command, record, workdir)
            self.invocations[(command.command_id, instance_id)] = invocation
            if self.hung(instance_id):
                timer = threading.Timer(command.timeout_seconds, self._delivery_timed_out, args=(invocation,))
                timer.daemon = True
                timer.start()
                continue
            thread = threading.Thread(target=self._run, args=(invocation,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _delivery_timed_out(self, invocation: Invocation) -> None:
        if invocation.record["Status"] == "Pending":
            self._set(invocation, Status="TimedOut", StatusDetails="DeliveryTimedOut", ResponseCode=-1)

    def cancel(self, instance_ids: list[str]) -> None:
        for (command_id, instance_id), invocation in list(self.invocations.items()):
            if instance_id in instance_ids and invocation.command.command_id == command_id:
                threading.Thread(target=invocation.stop, args=("Cancelled",), daemon=True).start()
                if invocation.process is None:
                    self._finish(invocation, "Cancelled", -1, b"", b"")

    def instance_lost(self, instance_id: str) -> None:
        """The instance went away: its scripts and containers die with it, without a word."""
        for (_, on), invocation in list(self.invocations.items()):
            process = invocation.process
            if on != instance_id or process is None or process.poll() is not None:
                continue
            with invocation.lock:
                invocation.final_status = invocation.final_status or "Terminated"
            os.killpg(process.pid, signal.SIGKILL)
            job_id = invocation.command.resolved_parameters.get("JobId")  # type: ignore[attr-defined]
            if job_id:
                subprocess.run(["docker", "rm", "--force", job_id], capture_output=True, env=self.env)

    def stop_all(self) -> None:
        for invocation in list(self.invocations.values()):
            invocation.stop("Cancelled")
        for thread in self.threads:
            thread.join(timeout=STOP_GRACE_SECONDS + 5)

    def _set(self, invocation: Invocation, **fields: Any) -> None:
        invocation.record.update(fields)
        statuses = [record["Status"] for record in invocation.command.invocations]
        finished = [s for s in statuses if s not in ("Pending", "InProgress", "Delayed")]
        invocation.command.completed_count = len(finished)
        invocation.command.error_count = sum(s != "Success" for s in finished)
        if len(finished) < len(statuses):
            invocation.command.status = "InProgress"
        elif all(s == statuses[0] for s in statuses):
            invocation.command.status = statuses[0]
        else:
            invocation.command.status = "Failed"
        invocation.command.status_details = invocation.command.status
        if self.listener is not None:
            self.listener(invocation.command, dict(invocation.record))

    def _finish(self, invocation: Invocation, status: str, code: int, out: bytes, err: bytes) -> None:
        self._set(
            invocation,
            Status=status,
            StatusDetails=status,
            ResponseCode=code,
            ExecutionEndDateTime=_now(),
            StandardOutputContent=out.decode("utf-8", "replace")[:STDOUT_LIMIT],
            StandardErrorContent=err.decode("utf-8", "replace")[:STDERR_LIMIT],
        )

    def _script_and_env(self, invocation: Invocation, step: dict[str, Any]) -> tuple[str, dict[str, str], int]:
        document = invocation.command.document  # type: ignore[attr-defined]
        values: dict[str, str] = invocation.command.resolved_parameters  # type: ignore[attr-defined]
        declared = document.get("parameters", {})
        env = dict(self.env, RUN_JOB_ROOT=str(invocation.workdir))
        pasted = {}
        for name, value in values.items():
            if declared[name].get("interpolationType") == "ENV_VAR":
                env[f"SSM_{name}"] = value
            pasted[name] = value  # without ENV_VAR, SSM pastes the value into the text

        def paste(text: str) -> str:
            return PARAMETER.sub(lambda m: pasted.get(m.group(1), m.group(0)), text)

        script = "\n".join(paste(line) for line in step["inputs"]["runCommand"]) + "\n"
        timeout = int(paste(str(step["inputs"].get("timeoutSeconds", "3600"))))
        return script, env, timeout

    def _run(self, invocation: Invocation) -> None:
        invocation.workdir.mkdir(parents=True, exist_ok=True)
        self._set(invocation, Status="InProgress", StatusDetails="InProgress", ExecutionStartDateTime=_now())
        out, err, code, status = b"", b"", 0, "Success"
        for step in invocation.command.document["mainSteps"]:  # type: ignore[attr-defined]
            if step["action"] != "aws:runShellScript":
                out, err, code, status = b"", f"unsupported action {step['action']}".encode(), 1, "Failed"
                break
            script, env, timeout = self._script_and_env(invocation, step)
            path = invocation.workdir / f"_script-{invocation.command.command_id}.sh"
            path.write_text(script, encoding="utf-8")
            # Output goes to files as it comes, so a watcher (the demo) can follow it live.
            out_path = invocation.workdir / f"{invocation.command.command_id}.stdout"
            err_path = invocation.workdir / f"{invocation.command.command_id}.stderr"
            with invocation.lock, out_path.open("ab") as out_file, err_path.open("ab") as err_file:
                if invocation.final_status is not None:
                    status = invocation.final_status
                    break
                invocation.process = subprocess.Popen(
                    ["bash", str(path)],
                    stdout=out_file,
                    stderr=err_file,
                    env=env,
                    cwd=invocation.workdir,
                    start_new_session=True,
                )
            timer = threading.Timer(timeout, invocation.stop, args=("TimedOut",))
            timer.start()
            invocation.process.wait()
            timer.cancel()
            path.unlink(missing_ok=True)
            out, err, code = out_path.read_bytes(), err_path.read_bytes(), invocation.process.returncode
            if invocation.final_status is not None:
                status = invocation.final_status
                break
            if code != 0:
                status = "Failed"
                break
        self._finish(invocation, status, code, out, err)
