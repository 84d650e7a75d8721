"""A `docker` for machines with no container engine: runs the job as a local process.

The local stack puts this directory first on the local agent's PATH only when no engine
answers, so the real document script and the real callback wrapper still run end to end.
It understands exactly the docker commands the host side uses (run, wait, inspect, logs,
stop, rm, ps, pull, login, image inspect). There is no isolation: the job runs as this user,
with the wrapper from worker_image/ as every image's entrypoint.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# The local stack gives each run its own directory for the "containers" it starts.
STATE = Path(os.environ["RUN_JOB_PROCESS_ENGINE_DIR"])
WITH_VALUE = {
    "--name",
    "--label",
    "--user",
    "--cap-drop",
    "--security-opt",
    "--pids-limit",
    "--cpus",
    "--memory",
    "--memory-swap",
    "--tmpfs",
    "--network",
    "--log-driver",
    "--log-opt",
    "-v",
    "--volume",
    "--env",
    "-e",
}
FLAGS = {"--detach", "-d", "--init", "--read-only", "--rm"}


def fail(message: str, code: int = 1) -> int:
    print(f"Error response from daemon: {message}", file=sys.stderr)
    return code


def container_dir(name: str) -> Path | None:
    for path in STATE.glob("*/meta.json"):
        meta = json.loads(path.read_text())
        if name in (meta["id"], meta["name"]):
            return path.parent
    return None


def meta_of(directory: Path) -> dict[str, Any]:
    meta: dict[str, Any] = json.loads((directory / "meta.json").read_text())
    return meta


def write_meta(directory: Path, meta: dict[str, Any]) -> None:
    (directory / "meta.json.tmp").write_text(json.dumps(meta))
    (directory / "meta.json.tmp").replace(directory / "meta.json")


def run(args: list[str]) -> int:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/root"),
        "PYTHONPATH": str(ROOT / "worker_image"),
        "PYTHONUNBUFFERED": "1",
    }
    name, i = "", 0
    labels: dict[str, str] = {}
    mounts: dict[str, str] = {}
    while i < len(args) and args[i].startswith("-"):
        option = args[i]
        if option in FLAGS:
            i += 1
            continue
        if option not in WITH_VALUE:
            return fail(f"unknown option {option}", 125)
        value = args[i + 1]
        i += 2
        if option == "--name":
            name = value
        elif option == "--label":
            key, _, label = value.partition("=")
            labels[key] = label
        elif option in ("-v", "--volume"):
            host, container = value.split(":")[:2]
            mounts[container] = host
        elif option in ("--env", "-e"):
            key, has_value, given = value.partition("=")
            if has_value:
                env[key] = given
            elif key in os.environ:
                env[key] = os.environ[key]
    if name and container_dir(name):
        return fail(f'Conflict. The container name "/{name}" is already in use.', 125)
    image, command = args[i], args[i + 1 :]
    # Container paths of the job's own directory map back to the host paths they mount.
    env["JOB_INPUT_PATH"] = mounts.get(env.get("JOB_INPUT_PATH", ""), env.get("JOB_INPUT_PATH", ""))
    env["JOB_OUTPUT_DIR"] = mounts.get(env.get("JOB_OUTPUT_DIR", ""), env.get("JOB_OUTPUT_DIR", ""))
    identifier = uuid.uuid4().hex
    directory = STATE / identifier
    directory.mkdir(parents=True)
    write_meta(
        directory,
        {
            "id": identifier,
            "name": name or identifier,
            "image": image,
            "labels": labels,
            "argv": [sys.executable, "-m", "callback_wrapper", *command],
            "env": env,
            "pid": None,
            "exitCode": None,
        },
    )
    subprocess.Popen(
        [sys.executable, __file__, "_supervise", str(directory)],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    print(identifier)
    return 0


def supervise(directory: Path) -> int:
    meta = meta_of(directory)
    with (directory / "log").open("wb") as log:
        child = subprocess.Popen(
            meta["argv"], env=meta["env"], stdout=log, stderr=subprocess.STDOUT, cwd=directory, start_new_session=True
        )
        meta["pid"] = child.pid
        write_meta(directory, meta)
        code = child.wait()
    meta["exitCode"] = code if code >= 0 else 128 - code
    write_meta(directory, meta)
    return 0


def wait(name: str) -> int:
    directory = container_dir(name)
    if directory is None:
        return fail(f"No such container: {name}")
    while meta_of(directory)["exitCode"] is None:
        time.sleep(0.1)
    print(meta_of(directory)["exitCode"])
    return 0


def inspect(name: str) -> int:
    directory = container_dir(name)
    if directory is None:
        print("[]")
        return fail(f"No such container: {name}")
    meta = meta_of(directory)
    state = {"Running": meta["exitCode"] is None, "ExitCode": meta["exitCode"] or 0, "OOMKilled": False}
    print(
        json.dumps(
            [
                {
                    "Id": meta["id"],
                    "Name": "/" + meta["name"],
                    "State": state,
                    "Config": {"Image": meta["image"], "Labels": meta["labels"]},
                }
            ]
        )
    )
    return 0


def logs(name: str, tail: int) -> int:
    directory = container_dir(name)
    if directory is None:
        return fail(f"No such container: {name}")
    lines = (directory / "log").read_bytes().decode("utf-8", "replace").splitlines(keepends=True)
    sys.stdout.write("".join(lines[-tail:]))
    return 0


def stop(name: str, grace: float) -> int:
    directory = container_dir(name)
    if directory is None:
        return fail(f"No such container: {name}")
    meta = meta_of(directory)
    if meta["exitCode"] is None and meta["pid"]:
        os.killpg(meta["pid"], signal.SIGTERM)
        deadline = time.monotonic() + grace
        while meta_of(directory)["exitCode"] is None and time.monotonic() < deadline:
            time.sleep(0.1)
        if meta_of(directory)["exitCode"] is None:
            os.killpg(meta["pid"], signal.SIGKILL)
    print(name)
    return 0


def remove(name: str) -> int:
    directory = container_dir(name)
    if directory is None:
        return fail(f"No such container: {name}")
    stop(name, 0)
    for path in directory.iterdir():
        path.unlink()
    directory.rmdir()
    return 0


def ps(filters: list[str]) -> int:
    for path in STATE.glob("*/meta.json"):
        meta = json.loads(path.read_text())
        wanted = [f.removeprefix("label=").partition("=") for f in filters if f.startswith("label=")]
        if all(meta["labels"].get(key) == value for key, _, value in wanted):
            print(meta["id"])
    return 0


def main(argv: list[str]) -> int:
    STATE.mkdir(parents=True, exist_ok=True)
    command, rest = argv[0], argv[1:]
    options = [arg for arg in rest if arg.startswith("-")]
    operands = [
        arg
        for i, arg in enumerate(rest)
        if not arg.startswith("-")
        and not (i > 0 and rest[i - 1] in ("--time", "--tail", "--filter", "--type", "--username"))
    ]
    if command == "_supervise":
        return supervise(Path(rest[0]))
    if command == "run":
        return run(rest)
    if command in ("pull", "login", "info", "version") or (command == "image" and rest[:1] == ["inspect"]):
        if "--password-stdin" in options:
            sys.stdin.read()  # every image is present: nothing to pull, nothing to log in to
        return 0
    if command == "wait":
        return wait(operands[0])
    if command == "inspect" or (command == "container" and rest[:1] == ["inspect"]):
        return inspect(operands[-1])
    if command == "logs":
        return logs(operands[0], int(rest[rest.index("--tail") + 1]) if "--tail" in rest else 10**9)
    if command == "stop":
        return stop(operands[0], float(rest[rest.index("--time") + 1]) if "--time" in rest else 10)
    if command == "rm":
        return remove(operands[0])
    if command == "ps":
        return ps([rest[i + 1] for i, arg in enumerate(rest) if arg == "--filter"])
    return fail(f"the process engine does not implement `docker {command}`")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
