"""Recording stand-ins for `docker` and `aws`, run by the host-side scripts under test.

conftest.py installs `docker` and `aws` executables that call `main()` here. Each call:
- writes its argv (NUL-separated, program name first) to `$FAKE_DIR/calls/`, like every other
  process the scripts run (the pass-through shims do the same), so tests can audit all argv;
- appends one JSON line with the details a test checks to `$FAKE_DIR/events.jsonl`;
- answers as `$FAKE_DIR/scenario.json` says (pull fails, exit code N, OOM, logs, signal answers).

The fakes are strict: an option or subcommand the scripts are not expected to use is an error
(exit 99), so a typo in the scripts fails a test instead of passing silently.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import time
from pathlib import Path
from typing import Any

UNSUPPORTED = 99
AWS_ERROR = 254
DOCKER_VALUE_FLAGS = {
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
    "--env",
}
DOCKER_BOOL_FLAGS = {"--detach", "--init", "--read-only"}
SIGNAL_OPERATIONS = {"send-task-success": "SendTaskSuccess", "send-task-failure": "SendTaskFailure"}
WAIT_LIMIT_SECONDS = 60.0


class Fake:
    def __init__(self, prog: str, argv: list[str]) -> None:
        self.prog = prog
        self.argv = argv
        self.dir = Path(os.environ["FAKE_DIR"])
        self.scenario: dict[str, Any] = json.loads((self.dir / "scenario.json").read_text(encoding="utf-8"))
        self.state = self.dir / "state"
        self.state.mkdir(exist_ok=True)
        record = b"".join(arg.encode("utf-8", "surrogateescape") + b"\0" for arg in [prog, *argv])
        (self.dir / "calls" / f"{time.time_ns()}-{os.getpid()}-{prog}").write_bytes(record)

    def main(self) -> int:
        raise NotImplementedError

    def event(self, **details: Any) -> None:
        line = {"prog": self.prog, "argv": self.argv, "t": time.time_ns(), "home": os.environ.get("HOME"), **details}
        with (self.dir / "events.jsonl").open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(line, ensure_ascii=False) + "\n")

    def count(self, **match: Any) -> int:
        path = self.dir / "events.jsonl"
        if not path.exists():
            return 0
        events = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        return sum(all(event.get(key) == value for key, value in match.items()) for event in events)

    def unsupported(self) -> int:
        self.event(unsupported=True)
        sys.stderr.write(f"fake {self.prog}: unsupported call {self.argv!r}\n")
        return UNSUPPORTED


class FakeDocker(Fake):
    def container_path(self, name: str) -> Path:
        return self.state / f"container-{name}.json"

    def container(self, name: str) -> dict[str, Any] | None:
        path = self.container_path(name)
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None

    def save(self, name: str, container: dict[str, Any]) -> None:
        self.container_path(name).write_text(json.dumps(container), encoding="utf-8")

    def no_such(self, name: str) -> int:
        sys.stderr.write(f"Error response from daemon: No such container: {name}\n")
        return 1

    def main(self) -> int:
        command, args = (self.argv[0], self.argv[1:]) if self.argv else ("", [])
        handler = {
            "image": self.image,
            "login": self.login,
            "pull": self.pull,
            "run": self.run,
            "wait": self.wait,
            "inspect": self.inspect,
            "logs": self.logs,
            "stop": self.stop,
            "rm": self.rm,
            "ps": self.ps,
            "info": self.info,
        }.get(command)
        return handler(args) if handler else self.unsupported()

    def info(self, args: list[str]) -> int:
        if args:
            return self.unsupported()
        root = self.scenario["docker_root"] or str(self.dir)
        self.event(action="info")
        print(f"Client:\n Version: 28.2.2\n\nServer:\n Storage Driver: overlay2\n Docker Root Dir: {root}\n")
        return 0

    def prune(self, args: list[str]) -> int:
        if len(args) != 4 or args[:3] != ["--all", "--force", "--filter"] or not args[3].startswith("until="):
            return self.unsupported()
        prune = self.scenario["prune"]
        self.event(action="prune", filter=args[3])
        sys.stdout.write(prune["output"])
        return int(prune["rc"])

    def image(self, args: list[str]) -> int:
        if args[:1] == ["prune"]:
            return self.prune(args[1:])
        if len(args) != 2 or args[0] != "inspect":
            return self.unsupported()
        present = self.scenario["image_present"] or (self.state / "pulled").exists()
        self.event(action="image-inspect", image=args[1], present=present)
        if present:
            print(json.dumps([{"RepoTags": [args[1]]}]))
            return 0
        sys.stderr.write(f"Error: No such image: {args[1]}\n")
        return 1

    def login(self, args: list[str]) -> int:
        if len(args) != 4 or args[:3] != ["--username", "AWS", "--password-stdin"]:
            return self.unsupported()
        password = sys.stdin.read().strip()
        self.event(action="login", registry=args[3], password_ok=password == self.scenario["ecr_password"])
        if self.scenario["login_rc"]:
            sys.stderr.write("Error response from daemon: login denied\n")
        else:
            print("Login Succeeded")
        return int(self.scenario["login_rc"])

    def pull(self, args: list[str]) -> int:
        if len(args) != 1:
            return self.unsupported()
        pull = self.scenario["pull"]
        self.event(action="pull", image=args[0])
        time.sleep(float(pull.get("seconds", 0)))
        sys.stdout.write(pull["output"])
        if pull["rc"] == 0:
            (self.state / "pulled").touch()
        return int(pull["rc"])

    def run(self, args: list[str]) -> int:
        options: list[list[str]] = []
        rest = list(args)
        while rest and rest[0].startswith("-"):
            flag = rest.pop(0)
            if flag in DOCKER_BOOL_FLAGS:
                options.append([flag])
            elif flag in DOCKER_VALUE_FLAGS and rest:
                options.append([flag, rest.pop(0)])
            else:
                return self.unsupported()
        if not rest:
            return self.unsupported()
        image, command = rest[0], rest[1:]
        names = [option[1] for option in options if option[0] == "--env"]
        mounts = [option[1].split(":") for option in options if option[0] == "-v"]
        files: dict[str, Any] = {}
        for mount in mounts:
            source = Path(mount[0])
            info = source.stat()
            files[mount[1]] = {
                "mode": stat.S_IMODE(info.st_mode),
                "uid": info.st_uid,
                "gid": info.st_gid,
                "parent_mode": stat.S_IMODE(source.parent.stat().st_mode),
            }
            if mount[1] == "/job/input.json":
                (self.dir / "captured-input.json").write_bytes(source.read_bytes())
                files["job_dir"] = {
                    path.name: stat.S_IMODE(path.lstat().st_mode) for path in sorted(source.parent.iterdir())
                }
        self.event(
            action="run",
            options=options,
            image=image,
            command=command,
            env={name: os.environ.get(name) for name in names},
            files=files,
        )
        run = self.scenario["run"]
        name = next(option[1] for option in options if option[0] == "--name")
        if run["rc"] == 0 or run.get("created"):
            labels = dict(option[1].split("=", 1) for option in options if option[0] == "--label")
            self.save(name, {"labels": labels, "started": time.time(), "stopped": False})
        if run["rc"]:
            sys.stderr.write(run["stderr"])
            return int(run["rc"])
        print("f" * 64)
        return 0

    def wait(self, args: list[str]) -> int:
        if len(args) != 1:
            return self.unsupported()
        self.event(action="wait", name=args[0])
        spec = self.scenario["container"]
        deadline = time.monotonic() + min(float(spec["wait_seconds"]), WAIT_LIMIT_SECONDS)
        while True:
            container = self.container(args[0])
            if container is None:
                return self.no_such(args[0])
            if container["stopped"]:
                print(spec["stop_exit_code"])
                return 0
            if time.monotonic() >= deadline:
                print(spec["exit_code"])
                return 0
            time.sleep(0.02)

    def inspect(self, args: list[str]) -> int:
        if len(args) != 3 or args[:2] != ["--type", "container"]:
            return self.unsupported()
        self.event(action="inspect", name=args[2])
        container = self.container(args[2])
        spec = self.scenario["container"]
        if container is None or spec.get("inspect_fails"):
            sys.stderr.write(f"Error: No such container: {args[2]}\n")
            return 1
        code, oom = (spec["stop_exit_code"], False) if container["stopped"] else (spec["exit_code"], spec["oom"])
        print(json.dumps([{"Name": "/" + args[2], "State": {"Status": "exited", "ExitCode": code, "OOMKilled": oom}}]))
        return 0

    def logs(self, args: list[str]) -> int:
        if len(args) != 3 or args[:2] != ["--tail", "200"]:
            return self.unsupported()
        self.event(action="logs", name=args[2])
        if self.container(args[2]) is None:
            return self.no_such(args[2])
        sys.stdout.write(self.scenario["container"]["logs"])
        return 0

    def stop(self, args: list[str]) -> int:
        if len(args) != 3 or args[0] != "--time" or not args[1].isdigit():
            return self.unsupported()
        self.event(action="stop", name=args[2], grace=int(args[1]))
        container = self.container(args[2])
        if container is not None and self.scenario["container"].get("vanish_on_stop"):
            self.container_path(args[2]).unlink()
            container = None
        if container is None:
            return self.no_such(args[2])
        container["stopped"] = True
        self.save(args[2], container)
        print(args[2])
        return 0

    def rm(self, args: list[str]) -> int:
        if len(args) != 2 or args[0] != "--force":
            return self.unsupported()
        existed = self.container(args[1]) is not None
        self.event(action="rm", name=args[1], existed=existed)
        if not existed:
            return self.no_such(args[1])
        self.container_path(args[1]).unlink()
        print(args[1])
        return 0

    def ps(self, args: list[str]) -> int:
        if len(args) != 5 or args[:4] != ["--all", "--quiet", "--no-trunc", "--filter"]:
            return self.unsupported()
        self.event(action="ps", filter=args[4])
        if self.scenario.get("ps_fails"):
            sys.stderr.write("Cannot connect to the Docker daemon\n")
            return 1
        if self.scenario.get("ps_warning"):
            sys.stderr.write("WARNING: Error loading config file: /root/.docker/config.json\n")
        kind, _, wanted = args[4].partition("=")
        label, _, value = wanted.partition("=")
        if kind != "label":
            return self.unsupported()
        for path in sorted(self.state.glob("container-*.json")):
            if json.loads(path.read_text(encoding="utf-8"))["labels"].get(label) == value:
                print("e" * 64)
        return 0


class FakeAws(Fake):
    def options(self, args: list[str], flags: set[str], switches: set[str]) -> dict[str, str] | None:
        found: dict[str, str] = {}
        rest = list(args)
        while rest:
            arg = rest.pop(0)
            if arg in switches:
                found[arg] = ""
            elif arg in flags and rest:
                found[arg] = rest.pop(0)
            else:
                return None
        return found

    def fail(self, code: str, operation: str, message: str) -> int:
        sys.stderr.write(f"\nAn error occurred ({code}) when calling the {operation} operation: {message}\n")
        return AWS_ERROR

    def main(self) -> int:
        service, operation, args = (self.argv[0], self.argv[1], self.argv[2:]) if len(self.argv) >= 2 else ("", "", [])
        if (service, operation) == ("dynamodb", "get-item"):
            return self.get_item(args)
        if (service, operation) == ("ecr", "get-login-password"):
            return self.get_login_password(args)
        if service == "stepfunctions" and operation in SIGNAL_OPERATIONS:
            return self.signal(operation, args)
        if (service, operation) == ("secretsmanager", "get-secret-value"):
            return self.secret(args, "--secret-id", set(), "GetSecretValue")
        if (service, operation) == ("ssm", "get-parameter"):
            return self.secret(args, "--name", {"--with-decryption"}, "GetParameter")
        return self.unsupported()

    def secret(self, args: list[str], id_flag: str, switches: set[str], api: str) -> int:
        found = self.options(args, {"--region", id_flag, "--output"}, switches)
        if found is None or set(found) != {"--region", id_flag, "--output", *switches} or found["--output"] != "json":
            return self.unsupported()
        ref = found[id_flag] if api == "GetSecretValue" else "ssm:" + found[id_flag]
        attempt = self.count(prog="aws", action="secret")
        self.event(action="secret", api=api, ref=ref, region=found["--region"])
        if attempt < self.scenario["secret_failures"]:
            return self.fail("ThrottlingException", api, "Rate exceeded")
        value = self.scenario["secrets"].get(ref)
        if value is None:
            code = "ResourceNotFoundException" if api == "GetSecretValue" else "ParameterNotFound"
            return self.fail(code, api, "not there")
        if isinstance(value, dict) and "error" in value:
            return self.fail(value["error"], api, f"the fake says no to {ref}")
        if api == "GetParameter":
            answer: dict[str, Any] = {"Parameter": {"Name": found[id_flag], "Type": "SecureString", "Value": value}}
        elif isinstance(value, dict):
            answer = {"ARN": ref, "Name": "n", "SecretBinary": "AAEC"}
        else:
            answer = {"ARN": ref, "Name": "n", "SecretString": value, "VersionId": "v1"}
        sys.stdout.write(json.dumps(answer, indent=4) + "\n")
        return 0

    def get_item(self, args: list[str]) -> int:
        found = self.options(args, {"--region", "--table-name", "--key", "--output"}, {"--consistent-read"})
        if found is None or set(found) != {"--region", "--table-name", "--key", "--output", "--consistent-read"}:
            return self.unsupported()
        if found["--output"] != "json":
            return self.unsupported()
        spec = self.scenario["get_item"]
        attempt = self.count(prog="aws", action="get-item")
        self.event(action="get-item", region=found["--region"], table=found["--table-name"], key=found["--key"])
        if attempt < spec["fail_times"]:
            return self.fail(spec["error"], "GetItem", "the fake says no")
        record = self.scenario["record"]
        if record is None:
            return 0  # awscli v1 prints nothing for an empty response
        sys.stdout.buffer.write(json.dumps({"Item": record}, indent=4, ensure_ascii=False).encode("utf-8") + b"\n")
        return 0

    def get_login_password(self, args: list[str]) -> int:
        found = self.options(args, {"--region"}, set())
        if found is None or "--region" not in found:
            return self.unsupported()
        self.event(action="get-login-password", region=found["--region"])
        print(self.scenario["ecr_password"])
        return 0

    def signal(self, operation: str, args: list[str]) -> int:
        found = self.options(args, {"--region", "--cli-input-json"}, set())
        if found is None or set(found) != {"--region", "--cli-input-json"}:
            return self.unsupported()
        if not found["--cli-input-json"].startswith("file://"):
            return self.unsupported()
        path = Path(found["--cli-input-json"].removeprefix("file://"))
        payload = json.loads(path.read_text(encoding="utf-8"))
        answers = self.scenario["signal_answers"]
        attempt = self.count(prog="aws", action="signal")
        answer = answers[min(attempt, len(answers) - 1)]
        self.event(
            action="signal",
            operation=operation,
            region=found["--region"],
            payload=payload,
            file_mode=stat.S_IMODE(path.stat().st_mode),
            answer=answer,
        )
        if answer == "ok":
            return 0
        return self.fail(answer, SIGNAL_OPERATIONS[operation], "the fake answers so")


def main() -> None:
    prog = Path(sys.argv[0]).name
    fake = {"docker": FakeDocker, "aws": FakeAws}[prog](prog, sys.argv[1:])
    sys.exit(fake.main())
