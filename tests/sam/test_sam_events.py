"""Every sample event drives the function `sam build` produced, as `sam local invoke` would:
the built artifact (.aws-sam/build), the python3.13 runtime, the template's environment, with
moto on loopback standing in for AWS. (sam local invoke itself needs Lambda's emulation image,
which cannot be pulled here; PLATFORM-NOTES.md.)"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from local_stack import moto_fixes, resources
from local_stack.client import CREDENTIALS
from local_stack.template import ROOT, Stack

pytestmark = pytest.mark.xdist_group("sam")
EVENTS = ROOT / "events" / "dispatch"
# file name -> {"error": name, "field": …} for a bad event, null for a good one
EXPECTED: dict[str, dict[str, str] | None] = json.loads((EVENTS / "expected.json").read_text())
RUNTIME = "3.13"
# Runs the handler once in the runtime, as the Lambda Python runtime reports errors.
INVOKE = """
import importlib, json, sys
module, name = sys.argv[1].rsplit(".", 1)
handler = getattr(importlib.import_module(module), name)
class Context:
    function_name = "DispatchFunction"; memory_limit_in_mb = 256; aws_request_id = "sam-local"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:DispatchFunction"
    def get_remaining_time_in_millis(self): return 30000
try:
    print(json.dumps({"result": handler(json.load(sys.stdin), Context())}))
except Exception as exc:
    print(json.dumps({"errorType": type(exc).__name__, "errorMessage": str(exc)}))
"""


def runtime_python() -> str:
    """The runtime's interpreter: pyenv's build first (its shims only answer when selected)."""
    pyenv_root = (
        subprocess.run(["pyenv", "root"], capture_output=True, text=True).stdout.strip()
        if shutil.which("pyenv")
        else ""
    )
    candidates = sorted(Path(pyenv_root).glob(f"versions/{RUNTIME}.*/bin/python{RUNTIME}")) if pyenv_root else []
    found = str(candidates[-1]) if candidates else shutil.which(f"python{RUNTIME}")
    if not found:
        pytest.fail(f"python{RUNTIME} (the functions' runtime) is not installed: sam build needs it too")
    return found


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("sam")
    build = workdir / "build"
    python_dir = str(Path(runtime_python()).parent)
    env = {**os.environ, "PATH": f"{python_dir}{os.pathsep}{os.environ['PATH']}", "AWS_DEFAULT_REGION": "us-east-1"}
    sam = Path(sys.executable).parent / "sam"
    # A clean build outside the checkout: samconfig.toml's cached build keeps .aws-sam/deps in the
    # working directory, and its clean-up of that folder failed (OSError in rmtree) on fresh clones.
    done = subprocess.run(
        [
            str(sam),
            "build",
            "--no-cached",
            "--build-dir",
            str(build),
            "--template-file",
            str(ROOT / "template.yaml"),
        ],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, f"sam build exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return build


@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Stack]]:
    os.environ.update(CREDENTIALS)
    moto_fixes.apply()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    stack = Stack()
    client = lambda service: boto3.client(service, endpoint_url=endpoint, region_name="us-east-1")  # noqa: E731
    resources.create_tables(client("dynamodb"), stack)
    resources.put_catalog(client("ssm"), stack)
    resources.create_documents(client("ssm"), stack)
    resources.create_instances(client("ec2"), stack, 2)
    yield endpoint, stack
    server.stop()


def invoke_built(build_dir: Path, endpoint: str, stack: Stack, event: dict[str, Any]) -> dict[str, Any]:
    props = stack.properties("DispatchFunction")
    env = {
        "PATH": os.environ["PATH"],
        **resources.function_environment(stack, "DispatchFunction"),
        **CREDENTIALS,
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
        # The Lambda runtime brings boto3; the build does not (src/requirements.txt).
        "PYTHONPATH": os.pathsep.join([str(build_dir / "DispatchFunction"), sysconfig.get_paths()["purelib"]]),
    }
    done = subprocess.run(
        [runtime_python(), "-c", INVOKE, props["Handler"]],
        input=json.dumps(event),
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    reply: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return reply


def test_every_event_has_an_expectation() -> None:
    assert sorted(p.name for p in EVENTS.glob("*.json") if p.name != "expected.json") == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample_event_drives_the_built_function(build_dir: Path, aws: tuple[str, Stack], name: str) -> None:
    endpoint, stack = aws
    reply = invoke_built(build_dir, endpoint, stack, json.loads((EVENTS / name).read_text()))
    if EXPECTED[name] is None:
        assert "result" in reply, reply
        assert reply["result"]["jobId"].startswith("job-")
    else:
        assert reply.get("errorType") == EXPECTED[name]["error"], reply
        assert EXPECTED[name]["field"] in reply["errorMessage"], reply


def test_build_output_holds_only_the_function_and_its_dependencies(build_dir: Path) -> None:
    function = build_dir / "DispatchFunction"
    assert (function / "dispatch" / "app.py").exists()
    assert (function / "aws_lambda_powertools").is_dir()
    assert not (function / "boto3").exists(), "boto3 comes with the runtime; bundling it doubles the artifact"
