"""The one harness for the host-side tests: runs the REAL scripts (src/host/*.sh) under bash.

(Named host_harness, not conftest: several test folders have a conftest.py, so `from conftest
import ...` would be ambiguous. conftest.py here only turns `Host` into the `host` fixture.)

Each test gets a `host` (a `Host`): a private directory with
- `bin/`: the ONLY directory on the scripts' PATH. It holds recording stand-ins for `docker` and
  `aws` (tests/host/fake_cli.py) and pass-through shims for every other program the scripts may
  run (python3, mkdir, rm, sleep). Every process the scripts start therefore records its argv in
  `calls/`, and a program the scripts use without a shim here fails the test ("command not found").
- `root/`: RUN_JOB_ROOT, where the job directories are made.
- `scenario.json`: what the stand-ins answer; tests change `host.scenario` before `run()`.

The script under test is copied to `ssm/_script.sh` and run from there, as the SSM agent runs a
document's runCommand text: nothing may depend on the script's own path or sibling files.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
# HOST_SCRIPTS_DIR points the tests at another copy of the scripts (e.g. to check they catch a mutation).
HOST_SCRIPTS = Path(os.environ.get("HOST_SCRIPTS_DIR", ROOT / "src" / "host"))
FAKE_CLI = Path(__file__).resolve().with_name("fake_cli.py")
PASS_THROUGH = ("python3", "mkdir", "rm", "sleep")
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

JOB_ID = "job-" + "0123456789abcdef" * 2
# A realistic task token: long, opaque, base64-ish (real ones run up to 2,048 characters).
TOKEN = "AQB4AAAAKgAAAAMAAAAA" + base64.b64encode(random.Random(7).randbytes(660)).decode()[:880]
TOKEN_HASH = hashlib.sha256(TOKEN.encode()).hexdigest()[:12]
IMAGE = "registry.example.com/run-job/worker:checksum-1"
INPUT = '{"text":"hello wörld","n":1}'
PARAMS = {
    "JobId": JOB_ID,
    "JobTable": "run-job-jobs",
    "Region": "eu-west-1",
    "PullPolicy": "always",
    "Network": "host",
    "LogDriver": "json-file",
    "LogGroup": "/run-job/jobs",
    # Upkeep off unless a test turns it on: test_real_docker shares the machine's engine and images.
    "PruneDiskPercent": "off",
    "PruneAgeHours": "72",
}
CLOSED_ANSWERS = ("TaskTimedOut", "InvalidToken", "TaskDoesNotExist")
CAUSE_LIMIT = 32_768


@dataclass(frozen=True)
class Raw:
    """An attribute given in DynamoDB's wire format already (e.g. a wrong type on purpose)."""

    value: Any


def typed(value: Any) -> Any:
    """A plain value in DynamoDB's wire format."""
    if isinstance(value, Raw):
        return value.value
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, (int, float)):
        return {"N": str(value)}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, list):
        return {"L": [typed(item) for item in value]}
    if isinstance(value, dict):
        return {"M": {key: typed(item) for key, item in value.items()}}
    raise TypeError(value)


def job_record(input_text: str = INPUT, **changes: Any) -> dict[str, Any]:
    """A job record as the dispatch function writes it; `changes` are plain values, `Raw` wire
    values, or None (attribute removed)."""
    record = {
        "jobId": JOB_ID,
        "executionArn": "arn:aws:states:eu-west-1:123456789012:execution:run-job:e1",
        "stateName": "RunJob",
        "stateEnteredTime": "2025-01-01T00:00:00.000Z",
        "retryCount": 0,
        "jobType": "checksum",
        "image": IMAGE,
        "command": ["python3", "-m", "callback_wrapper", "--job", "examples.checksum:run"],
        "input": input_text,
        "inputSha256": hashlib.sha256(input_text.encode("utf-8")).hexdigest(),
        "token": TOKEN,
        "tokenHash": TOKEN_HASH,
        "cpu": 0.5,
        "memoryMiB": 256,
        "pidsLimit": 128,
        "readOnlyRootFs": False,
        "env": {"LOG_LEVEL": "INFO"},
        "timeoutSeconds": 3600,
        "heartbeatSeconds": 120,
        "stopGraceSeconds": 10,
        "instanceId": "i-0123456789abcdef0",
        "status": "DISPATCHED",
    }
    for key, value in changes.items():
        record[key] = value
    return {key: typed(value) for key, value in record.items() if value is not None}


def default_scenario() -> dict[str, Any]:
    return {
        "record": job_record(),
        "get_item": {"fail_times": 0, "error": "ProvisionedThroughputExceededException"},
        "image_present": False,
        "ecr_password": "ecr-password-" + "x" * 40,
        "login_rc": 0,
        "pull": {"rc": 0, "output": "checksum-1: Pulling from run-job/worker\nStatus: Downloaded newer image\n"},
        "run": {"rc": 0, "stderr": ""},
        "container": {
            "exit_code": 0,
            "oom": False,
            "logs": "job started\njob done\n",
            "wait_seconds": 0,
            "stop_exit_code": 143,
        },
        "signal_answers": ["ok"],
        # Secret reference -> its value, or {"error": code} / {"binary": true}; "secret_failures"
        # answers that many first calls with a throttling error.
        "secrets": {},
        "secret_failures": 0,
        "docker_root": None,  # `docker info`'s Docker Root Dir (None: the test's own directory)
        "prune": {"rc": 0, "output": "Deleted Images:\nuntagged: old:1\n\nTotal reclaimed space: 1.5GB\n"},
    }


@dataclass
class Result:
    rc: int
    stdout: str
    stderr: str


@dataclass
class Host:
    dir: Path
    real_docker: bool = False
    scenario: dict[str, Any] = field(default_factory=default_scenario)

    def __post_init__(self) -> None:
        self.bin = self.dir / "bin"
        self.calls = self.dir / "calls"
        self.root = self.dir / "root"
        for path in (self.bin, self.calls, self.root, self.dir / "ssm"):
            path.mkdir(parents=True, exist_ok=True)
        fakes = ("aws",) if self.real_docker else ("aws", "docker")
        for name in fakes:
            self.install(
                name,
                f"#!{sys.executable} -S\nimport sys\nsys.path.insert(0, {str(FAKE_CLI.parent)!r})\n"
                "from fake_cli import main\nmain()\n",
            )
        for name in PASS_THROUGH + (("docker",) if self.real_docker else ()):
            real = shutil.which(name, path=SYSTEM_PATH)
            assert real, f"{name} is not installed"
            self.install(
                name,
                "#!/bin/bash\n"
                f'printf \'%s\\0\' {name} "$@" >"$FAKE_DIR/calls/${{EPOCHREALTIME/./}}000-$$-{name}"\n'
                f'exec {real} "$@"\n',
            )

    def install(self, name: str, text: str) -> None:
        path = self.bin / name
        path.write_text(text, encoding="utf-8")
        path.chmod(0o755)

    # --- running the scripts ---------------------------------------------------------------------
    def environment(self, params: dict[str, str | None] | None, env: dict[str, str | None] | None) -> dict[str, str]:
        values: dict[str, str | None] = {
            "PATH": str(self.bin),
            "FAKE_DIR": str(self.dir),
            "RUN_JOB_ROOT": str(self.root),
            "RUN_JOB_RETRY_DELAY": "0",
        }
        if self.real_docker:
            values["DOCKER_HOST"] = os.environ.get("DOCKER_HOST", "unix:///tmp/dockerd/docker.sock")
        values.update({f"SSM_{name}": value for name, value in {**PARAMS, **(params or {})}.items()})
        values.update(env or {})
        return {key: value for key, value in values.items() if value is not None}

    def prepare(self, script: str = "run_container.sh") -> Path:
        """Write the scenario and the script's copy (as the agent writes `_script.sh`); its path."""
        (self.dir / "scenario.json").write_text(json.dumps(self.scenario), encoding="utf-8")
        copy = self.dir / "ssm" / "_script.sh"
        copy.write_text((HOST_SCRIPTS / script).read_text(encoding="utf-8"), encoding="utf-8")
        copy.chmod(0o755)
        return copy

    def start(
        self,
        script: str = "run_container.sh",
        params: dict[str, str | None] | None = None,
        env: dict[str, str | None] | None = None,
    ) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(self.prepare(script))],
            cwd=self.dir / "ssm",
            env=self.environment(params, env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def finish(self, process: subprocess.Popen[str], timeout: float = 60) -> Result:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
            pytest.fail(f"script did not finish in {timeout}s:\n{stdout}\n{stderr}")
        return Result(process.returncode, stdout, stderr)

    def run(
        self,
        script: str = "run_container.sh",
        params: dict[str, str | None] | None = None,
        env: dict[str, str | None] | None = None,
    ) -> Result:
        return self.finish(self.start(script, params, env))

    def interrupt(
        self, process: subprocess.Popen[str], when: str | Callable[[], bool], sig: int = signal.SIGTERM
    ) -> Result:
        """Send `sig` to the script once a stand-in has logged the event `when` (e.g. "wait"),
        or once `when()` is true."""
        ready = when if callable(when) else lambda: bool(self.events(when))
        deadline = time.monotonic() + 20
        while not ready() and process.poll() is None:
            assert time.monotonic() < deadline, f"not ready to interrupt ({when!r}) within 20s"
            time.sleep(0.02)
        time.sleep(0.2)  # let the stand-in settle into its blocking call
        process.send_signal(sig)
        return self.finish(process)

    # --- what happened -----------------------------------------------------------------------------
    def events(self, action: str | None = None) -> list[dict[str, Any]]:
        path = self.dir / "events.jsonl"
        if not path.exists():
            return []
        events = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        return [event for event in events if action is None or event.get("action") == action]

    def event(self, action: str) -> dict[str, Any]:
        found = self.events(action)
        assert len(found) == 1, f"expected one {action!r} event, got {len(found)}: {found}"
        return found[0]

    def argvs(self) -> list[list[str]]:
        """The argv of every process the script ran (stand-ins and shims), in start order."""
        records = sorted(self.calls.iterdir(), key=lambda path: int(path.name.split("-")[0]))
        return [path.read_bytes().decode("utf-8", "surrogateescape").split("\0")[:-1] for path in records]

    def signals(self) -> list[dict[str, Any]]:
        return self.events("signal")

    def signal(self) -> dict[str, Any]:
        """The one signal sent to Step Functions, with its cause decoded."""
        sent = self.event("signal")
        payload = dict(sent["payload"])
        if "cause" in payload:
            payload["cause"] = json.loads(payload["cause"])
        return {**sent, "payload": payload}

    def docker_run(self) -> dict[str, Any]:
        return self.event("run")

    def add_container(self, name: str, labels: dict[str, str]) -> None:
        """A container the fake docker knows before the script runs (for stop_container.sh)."""
        state = self.dir / "state"
        state.mkdir(exist_ok=True)
        container = {"labels": labels, "started": time.time(), "stopped": False}
        (state / f"container-{name}.json").write_text(json.dumps(container), encoding="utf-8")

    def has_container(self, name: str) -> bool:
        return (self.dir / "state" / f"container-{name}.json").exists()

    def job_dirs(self) -> list[Path]:
        jobs = self.root / "jobs"
        return sorted(jobs.iterdir()) if jobs.exists() else []
