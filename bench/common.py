"""What every benchmark shares: a local stack to run on, clocks, statistics, results files."""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, NamedTuple

from local_stack.__main__ import alive, down, read_state, up
from local_stack.client import LocalStackClient
from local_stack.images import engine_available

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"


# --- statistics ---------------------------------------------------------------------------------
def median(values: Iterable[float]) -> float:
    data = list(values)
    return statistics.median(data) if data else math.nan


def percentile(values: Iterable[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), q in [0, 100]."""
    data = sorted(values)
    if not data:
        return math.nan
    rank = (len(data) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (rank - low)


def seconds(value: float, digits: int = 2) -> str:
    return "n/a" if math.isnan(value) else f"{value:.{digits}f} s"


def millis(value: float, digits: int = 0) -> str:
    return "n/a" if math.isnan(value) else f"{value * 1000:.{digits}f} ms"


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.nan


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A Markdown table: what the README holds, printed as it is measured."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


# --- the machine and the results file -----------------------------------------------------------
def machine() -> dict[str, Any]:
    """Enough to tell whether two result files are comparable."""
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.machine(),
    )
    docker = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True, text=True)
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu": model,
        "cpus": os.cpu_count(),
        "memoryGiB": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": {name: metadata.version(name) for name in ("boto3", "botocore", "moto", "aws-lambda-powertools")},
        "docker": docker.stdout.strip() or None,
        # Other work on the machine skews every figure: recorded (before and after), not subtracted.
        "loadAverage": load_average(),
    }


def load_average() -> list[float]:
    return [round(load, 2) for load in os.getloadavg()]


def write_results(name: str, results: dict[str, Any], directory: Path, load_before: list[float]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    document = {
        "bench": name,
        "command": "python -m bench " + " ".join(sys.argv[1:]),
        "machine": machine() | {"loadAverageBefore": load_before},
        **results,
    }
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    return path


# --- a local stack to run on --------------------------------------------------------------------
@contextmanager
def local_stack(state_dir: Path | None, instances: int, slots: int | None = None) -> Iterator[LocalStackClient]:
    """A running local stack: the one in state_dir if it is up (left running), else a new one
    brought up for this benchmark and taken down after it."""
    if not engine_available():
        raise SystemExit("no container engine answers (set DOCKER_HOST): the benchmarks run real containers")
    if state_dir is not None:
        existing = read_state(state_dir)
        if existing and alive(existing["pid"]):
            yield LocalStackClient(existing)
            return
    directory = state_dir or Path(tempfile.mkdtemp(prefix="run-job-bench-"))
    state = up(directory, instances, slots)
    try:
        yield LocalStackClient(state)
    finally:
        down(directory)
        if state_dir is None:
            shutil.rmtree(directory, ignore_errors=True)


def epoch(value: datetime | str) -> float:
    """Seconds since the epoch from a boto3 datetime or an ISO 8601 string (the local agent's)."""
    parsed = datetime.fromisoformat(value) if isinstance(value, str) else value
    return parsed.timestamp()


# --- container events ---------------------------------------------------------------------------
# Labels that name a container of ours: the host side's job id, the bare run's run id.
EVENT_KEYS = ("name", "run-job.job-id", "run-job.bench-run")


class DockerEvents:
    """Create, start and die times of containers, from the engine's own event stream.

    The engine stamps each event in nanoseconds on this machine's clock, the clock the jobs'
    own timestamps and moto's history use too, so intervals across the three are comparable.
    """

    def __init__(self) -> None:
        self.times: dict[tuple[str, str], float] = {}
        self.changed = threading.Condition()
        self.process = subprocess.Popen(
            [
                "docker",
                "events",
                "--format",
                "{{json .}}",
                *("--filter", "type=container"),
                *("--filter", "event=create", "--filter", "event=start", "--filter", "event=die"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.process.stdout is not None  # a pipe: asked for above
        for line in self.process.stdout:
            event = json.loads(line)
            attributes = event.get("Actor", {}).get("Attributes", {})
            with self.changed:
                for key in EVENT_KEYS:
                    if key in attributes:
                        self.times[(attributes[key], event["Action"])] = event["timeNano"] / 1e9
                self.changed.notify_all()

    def wait_for(self, key: str, action: str, timeout: float = 30) -> float:
        """When `action` happened to the container named (or labelled) `key`; NaN if not seen."""
        with self.changed:
            self.changed.wait_for(lambda: (key, action) in self.times, timeout)
            return self.times.get((key, action), math.nan)

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(10)


# --- CPU time -----------------------------------------------------------------------------------
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
DOCKER_CPUACCT = Path("/sys/fs/cgroup/cpuacct/docker/cpuacct.usage")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces: split after its closing parenthesis.
    return text[text.rindex(")") + 2 :].split()


class Process(NamedTuple):
    parent: int
    name: str
    own: float  # CPU seconds of the process itself (utime + stime)
    reaped: float  # of its children it waited for (cutime + cstime)


def _process_table() -> dict[int, Process]:
    table: dict[int, Process] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is None:
            continue
        try:
            name = (entry / "comm").read_text().strip()
        except OSError:
            continue
        # Fields 14-17 of /proc/PID/stat (utime, stime, cutime, cstime), here from index 11.
        utime, stime, cutime, cstime = (int(value) / CLOCK_TICKS for value in fields[11:15])
        table[int(entry.name)] = Process(int(fields[1]), name, utime + stime, cutime + cstime)
    return table


def _descendants(table: dict[int, Process], root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, process in table.items():
        children.setdefault(process.parent, []).append(pid)
    found, stack = [], list(children.get(root, []))
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack += children.get(pid, [])
    return found


def local_stack_cpu_seconds(server_pid: int) -> dict[str, float]:
    """CPU seconds of the local stack's server process tree, living or reaped, by part.

    A reaped child's time is in its parent's cutime/cstime and it is gone from /proc, so summing
    the living processes and the reaped times counts each second once. The server reaps the
    host side's scripts (the local agent waits for them); the functions' workers live on.
    """
    table = _process_table()
    server = table.get(server_pid)
    if server is None:
        return {"server": math.nan, "hostSide": math.nan, "functions": math.nan}
    parts = {"server": server.own, "hostSide": server.reaped, "functions": 0.0}
    for child in (pid for pid, process in table.items() if process.parent == server_pid):
        tree = [child, *_descendants(table, child)]
        used = sum(table[pid].own + table[pid].reaped for pid in tree)
        # The agent runs each script with bash; the other children are the functions' workers.
        parts["hostSide" if table[child].name == "bash" else "functions"] += used
    return parts


def named_cpu_seconds(names: Sequence[str]) -> float:
    return sum(process.own + process.reaped for process in _process_table().values() if process.name in names)


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent not idle (every process, everyone's)."""
    values = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / CLOCK_TICKS


def containers_cpu_seconds() -> float:
    """CPU seconds of every container the engine ran (cgroup v1 charges the parent too, so
    removed containers still count); NaN where that cgroup does not exist."""
    try:
        return int(DOCKER_CPUACCT.read_text()) / 1e9
    except OSError:
        return math.nan


class CpuMeter:
    """CPU seconds spent between start and stop, split by where they went."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid
        self.started: dict[str, float] = {}
        self.wall = 0.0

    def _read(self) -> dict[str, float]:
        return {
            # moto and the agent (server), the scripts the agent ran (hostSide), dispatch and reaper
            **local_stack_cpu_seconds(self.server_pid),
            "containers": containers_cpu_seconds(),
            "dockerEngine": named_cpu_seconds(("dockerd", "containerd")),
            "benchClient": time.process_time(),
            "machine": machine_busy_seconds(),
        }

    def start(self) -> None:
        self.started = self._read()
        self.wall = time.monotonic()

    def stop(self) -> dict[str, float]:
        ended = self._read()
        used = {key: ended[key] - self.started[key] for key in ended}
        used["wall"] = time.monotonic() - self.wall
        return used
