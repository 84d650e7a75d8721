"""The local stack's server process: moto on 127.0.0.1, our resources, our code, the agent.

`python -m local_stack serve` runs this in the foreground until SIGTERM; `up` and `down`
(local_stack/__main__.py) start and stop it in the background. It writes its interface (the
JSON object of DESIGN-BRIEF.md, "Local stack") to `<state dir>/state.json` once ready.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import Any

import requests
from moto.server import ThreadedMotoServer

from local_stack import events, images, lambda_runtime, moto_fixes, resources, throttle
from local_stack.agent import LocalAgent
from local_stack.client import CREDENTIALS, aws_client
from local_stack.template import ROOT, Stack

REGION = "us-east-1"
MOTO_CONFIG = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}
# Functions whose real code runs for moto's Lambda.
FUNCTIONS = ("DispatchFunction", "ReaperFunction")
# Template parameters of the local deployment: no CloudWatch Logs; no image prune, since the
# instances share the developer's own container engine and its images.
LOCAL_PARAMETERS = {"ContainerLogDriver": "json-file", "ImagePruneDiskPercent": "off"}
# POST {"service:Operation": count, ...} here arms a throttling burst (local_stack/throttle.py);
# GET reports what was served and what is left. For tests: AWS answers throttling on its own.
THROTTLE_PATH = "/_local_stack/throttle"


class ThrottleControl:
    """WSGI middleware in front of moto: the throttle control path, everything else to moto."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") != THROTTLE_PATH:
            return self.app(environ, start_response)
        if environ["REQUEST_METHOD"] == "POST":
            size = int(environ.get("CONTENT_LENGTH") or 0)
            throttle.arm(json.loads(environ["wsgi.input"].read(size) or b"{}"))
        body = json.dumps(throttle.status()).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def say(message: str) -> None:
    print(f"local-stack: {message}", flush=True)


class LocalStack:
    def __init__(self, state_dir: Path, instance_count: int, slots: int | None = None) -> None:
        self.state_dir = state_dir
        self.instance_count = instance_count
        self.slots = slots
        self.port = free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self.stack = Stack(region=REGION, parameters=LOCAL_PARAMETERS)
        self.server: ThreadedMotoServer | None = None
        self.agent: LocalAgent | None = None
        self.bus: events.EventBus | None = None
        # The template sweeps every 5 minutes; tests shorten it.
        self.sweep_seconds = int(os.environ["RUN_JOB_SWEEP_SECONDS"]) if "RUN_JOB_SWEEP_SECONDS" in os.environ else None
        self.stopped = threading.Event()

    def hung(self, instance_id: str) -> bool:
        tags = moto_fixes.instance_tags(self.stack.account, REGION, instance_id)
        return tags.get("run-job:local-agent") == "hung"

    def client(self, service: str) -> Any:
        return aws_client(service, self.endpoint_url, REGION)

    def aws_environment(self) -> dict[str, str]:
        """What our code on the 'instance' and in 'Lambda' needs to reach the local AWS."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            **CREDENTIALS,
        }

    def start(self) -> dict[str, Any]:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        os.environ["MOTO_PORT"] = str(self.port)  # moto's engine calls Lambda back on this port
        os.environ.update(CREDENTIALS)
        moto_fixes.apply()
        throttle.install()
        lambda_runtime.install()
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()
        wsgi = self.server._server
        if wsgi is not None:  # set by start()
            wsgi.app = ThrottleControl(wsgi.app)
        requests.post(f"{self.endpoint_url}/moto-api/config", json=MOTO_CONFIG, timeout=10).raise_for_status()

        # RUN_JOB_ENGINE=process forces the process engine (its own test; a machine without Docker).
        engine = "docker" if os.environ.get("RUN_JOB_ENGINE") != "process" and images.engine_available() else "none"
        ssm = self.client("ssm")
        catalog = resources.put_catalog(ssm, self.stack)
        if engine == "docker":
            images.build_worker_image(say)
            values = [ssm.get_parameter(Name=name)["Parameter"]["Value"] for name in catalog]
            images.tag_catalog_images(images.catalog_images(values))
        else:
            say("no container engine reachable: jobs run as local processes (same wrapper, no isolation)")

        tables = resources.create_tables(self.client("dynamodb"), self.stack)
        output_bucket = resources.create_bucket(self.client("s3"), self.stack)
        documents = resources.create_documents(ssm, self.stack)
        iam, log_dir = self.client("iam"), self.state_dir / "logs"
        log_dir.mkdir(exist_ok=True)
        for logical_id in FUNCTIONS:
            arn = resources.create_function(self.client("lambda"), iam, self.stack, logical_id)
            env = {
                "PATH": os.environ["PATH"],
                "HOME": os.environ.get("HOME", "/root"),
                **self.aws_environment(),
                **resources.function_environment(self.stack, logical_id),
                "AWS_LAMBDA_FUNCTION_NAME": self.stack.physical_name(logical_id),
                "RUN_JOB_FUNCTION_ARN": arn,
            }
            props = self.stack.properties(logical_id)
            log = (log_dir / f"{logical_id}.log").open("a", encoding="utf-8")
            lambda_runtime.register(
                lambda_runtime.FunctionWorkers(
                    self.stack.physical_name(logical_id),
                    resources.function_code_dir(self.stack, logical_id),
                    props["Handler"],
                    env,
                    log,
                )
            )
        state_machine_arn = resources.create_state_machine(
            self.client("stepfunctions"), iam, self.stack, "RunJobStateMachine"
        )
        # moto runs the Distributed Map (ItemReader, MaxConcurrency, sync:2 children) but ignores
        # ToleratedFailurePercentage and its ResultWriter writes only the manifest (docs/design.md).
        batch_state_machine_arn = resources.create_state_machine(
            self.client("stepfunctions"), iam, self.stack, "RunBatchStateMachine"
        )
        instance_ids = resources.create_instances(self.client("ec2"), self.stack, self.instance_count, self.slots)

        agent_env = {
            **os.environ,
            **self.aws_environment(),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        }
        if engine == "none":
            agent_env["PATH"] = f"{ROOT / 'local_stack' / 'process_engine_bin'}{os.pathsep}{agent_env['PATH']}"
            agent_env["RUN_JOB_PROCESS_ENGINE_DIR"] = str(self.state_dir / "processes")
        self.bus = events.EventBus(self.stack, self.client("lambda"), log_dir / "events.jsonl", self.sweep_seconds)
        self.agent = LocalAgent(self.state_dir / "instances", agent_env, events.command_listener(self.bus), self.hung)
        moto_fixes.command_sink = self.agent.accept
        events.start_watchers(
            self.bus, self.client("stepfunctions"), self.client("ec2"), state_machine_arn, self.agent.instance_lost
        )

        state = {
            "endpoint_url": self.endpoint_url,
            "region": REGION,
            "state_machine_arn": state_machine_arn,
            "job_table": tables["JobTable"],
            "slot_table": tables["SlotTable"],
            "batch_state_machine_arn": batch_state_machine_arn,
            "output_bucket": output_bucket,
            "document_name": documents["RunContainerDocument"],
            "stop_document_name": documents["StopContainerDocument"],
            "catalog_path": f"/{self.stack.name}/job-types/",
            "instance_ids": instance_ids,
            "engine": engine,
            "pid": os.getpid(),
            "state_dir": str(self.state_dir),
        }
        (self.state_dir / "state.json").write_text(json.dumps(state, indent=2))
        return state

    def stop(self) -> None:
        if self.agent is not None:
            self.agent.stop_all()
        if self.bus is not None:
            self.bus.stop()
        lambda_runtime.stop_all()
        if self.server is not None:
            self.server.stop()
        (self.state_dir / "state.json").unlink(missing_ok=True)
        self.stopped.set()


def serve(state_dir: Path, instance_count: int, slots: int | None) -> None:
    stack = LocalStack(state_dir, instance_count, slots)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=stack.stop).start())
    try:
        state = stack.start()
    except BaseException:
        stack.stop()
        raise
    say(f"ready at {state['endpoint_url']} ({instance_count} instances, engine: {state['engine']})")
    # Wake up now and then: a signal the kernel hands to another thread runs its Python handler
    # only when the main thread runs bytecode, never while it blocks in an untimed wait.
    while not stack.stopped.wait(1.0):
        pass
    say("stopped")
