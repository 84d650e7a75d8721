"""What the benchmarks add to a running local stack, through its public API only.

- The job type `bench-checksum`: the checksum example job, unchanged, run by `python3 -c` code
  that also prints the job's own first and last moments in its output. The same code runs
  under the callback wrapper (this job type) and bare (the polling fixture, the host-overhead
  baseline), so every variant runs the identical job and reports its end on the same clock.
- The polling fixture: an SSM document whose script is bench/bare_run.sh and a second state
  machine, bench/polling.asl.json (sendCommand, then Wait → getCommandInvocation → Choice).

The local stack runs function code only for the functions it registered itself, so the fixture
uses Step Functions' AWS SDK integrations where the classic design has two small Lambda
functions ("send command", "check status"): the states and their transitions are the same, and
the Lambda invocations that design would add are counted as 1 + polls (bench/pricing.py).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from bench.common import BENCH_DIR, epoch
from local_stack.client import LocalStackClient

BENCH_JOB_TYPE = "bench-checksum"
# First line: the job's own clock when it starts; last line: its output, with its end time.
JOB_CODE = (
    "import json, os, time\n"
    "started = time.time()\n"
    "from examples.checksum import run\n"
    "result = run(json.load(open(os.environ['JOB_INPUT_PATH'], encoding='utf-8')))\n"
    "print(json.dumps({'checksum': result, 'jobStart': started, 'jobEnd': time.time()}))\n"
)
DOCUMENT_NAME = "run-job-bench-BareRun"
POLLING_STATE_MACHINE = "run-job-bench-Polling"
POLL_STATE = "CheckStatus"  # the polling fixture's "check status" Task (bench/polling.asl.json)
LOOP_STATES = frozenset({"Wait", POLL_STATE, "IsDone"})  # what it goes through once per poll
# Generous for a few-second job, and the wrapper heartbeats every 20 s as it would in production.
TIMEOUT_SECONDS = 600
HEARTBEAT_SECONDS = 60


def register_job_type(stack: LocalStackClient) -> str:
    """Add `bench-checksum` to the catalog (the checksum entry with JOB_CODE as its command);
    return the image both variants run."""
    ssm = stack.client("ssm")
    prefix = stack.state["catalog_path"]
    entry = json.loads(ssm.get_parameter(Name=prefix + "checksum")["Parameter"]["Value"])
    entry["command"] = ["--", "python3", "-c", JOB_CODE]
    ssm.put_parameter(Name=prefix + BENCH_JOB_TYPE, Type="String", Value=json.dumps(entry), Overwrite=True)
    image: str = entry["image"]
    return image


def callback_request(sleep_seconds: float, heartbeat_seconds: int = HEARTBEAT_SECONDS) -> dict[str, Any]:
    """A job request for the real run-job state machine."""
    return {
        "jobType": BENCH_JOB_TYPE,
        "input": {"sleepSeconds": sleep_seconds},
        "timeoutSeconds": TIMEOUT_SECONDS,
        "heartbeatSeconds": heartbeat_seconds,
    }


def polling_input(image: str, instance_id: str, sleep_seconds: float, poll_seconds: int) -> dict[str, Any]:
    """The polling fixture's execution input: the same image, code and job input."""
    return {
        "instanceId": instance_id,
        "image": image,
        "code": JOB_CODE,
        "input": {"sleepSeconds": sleep_seconds},
        "pollSeconds": poll_seconds,
    }


def bare_run_environment(image: str, sleep_seconds: float, run_id: str) -> dict[str, str]:
    """bench/bare_run.sh's parameters, as SSM would export them."""
    return {
        "SSM_Image": image,
        "SSM_Code": JOB_CODE,
        "SSM_Input": json.dumps({"sleepSeconds": sleep_seconds}),
        "SSM_RunId": run_id,
    }


def _bare_run_document() -> dict[str, Any]:
    script = (BENCH_DIR / "bare_run.sh").read_text(encoding="utf-8")
    return {
        "schemaVersion": "2.2",
        "description": "Benchmark fixture: a bare docker run of the worker image (bench/bare_run.sh).",
        "parameters": {
            "Image": {
                "type": "String",
                "allowedPattern": "^[a-z0-9][a-z0-9._/:@-]{0,511}$",
                "interpolationType": "ENV_VAR",
            },
            "Code": {"type": "String", "allowedPattern": "^[\\s\\S]{1,4096}$", "interpolationType": "ENV_VAR"},
            "Input": {"type": "String", "allowedPattern": "^\\{[\\s\\S]{0,65534}\\}$", "interpolationType": "ENV_VAR"},
            "RunId": {"type": "String", "allowedPattern": "^[A-Za-z0-9_-]{1,80}$", "interpolationType": "ENV_VAR"},
        },
        "mainSteps": [
            {
                "action": "aws:runShellScript",
                "name": "BareRun",
                "inputs": {"runCommand": script.splitlines(), "timeoutSeconds": "3600"},
            }
        ],
    }


def deploy_polling(stack: LocalStackClient) -> str:
    """Create the polling fixture's document and state machine (once); return its ARN."""
    ssm, sfn, iam = stack.client("ssm"), stack.client("stepfunctions"), stack.client("iam")
    if DOCUMENT_NAME not in {
        d["Name"] for d in ssm.list_documents(Filters=[{"Key": "Owner", "Values": ["Self"]}])["DocumentIdentifiers"]
    }:
        ssm.create_document(
            Name=DOCUMENT_NAME,
            Content=json.dumps(_bare_run_document()),
            DocumentType="Command",
            DocumentFormat="JSON",
        )
    for machine in sfn.list_state_machines()["stateMachines"]:
        if machine["name"] == POLLING_STATE_MACHINE:
            existing: str = machine["stateMachineArn"]
            return existing
    role = iam.create_role(
        RoleName=f"{POLLING_STATE_MACHINE}Role",
        AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
    )["Role"]["Arn"]
    definition = (BENCH_DIR / "polling.asl.json").read_text(encoding="utf-8")
    arn: str = sfn.create_state_machine(
        name=POLLING_STATE_MACHINE,
        definition=definition.replace("${BareRunDocument}", DOCUMENT_NAME),
        roleArn=role,
        type="STANDARD",
    )["stateMachineArn"]
    return arn


@dataclass(frozen=True)
class ExecutionFigures:
    """What one execution's history and output say, on one clock (seconds since the epoch)."""

    status: str
    transitions: int  # states entered, plus Task retries: what Standard workflows bill
    task_states: int
    retries: int  # Task attempts after the first (a Job.NoCapacity retry, say)
    lambda_invocations: int  # Lambda Tasks that actually ran here
    polls: int
    events: int
    loop_transitions: int  # of `transitions`, those of the polling loop's states (LOOP_STATES)
    loop_events: int  # of `events`, those from entering a loop state to leaving it
    started: float
    ended: float
    task_succeeded: float  # the last Task's success: when the job's outcome reached Step Functions
    job_start: float
    job_end: float

    @property
    def resume_latency(self) -> float:
        """From the job's last line to the execution's end."""
        return self.ended - self.job_end


def execution_figures(stack: LocalStackClient, execution_arn: str) -> ExecutionFigures:
    history = stack.history(execution_arn)
    described = stack.describe(execution_arn)
    output = json.loads(described["output"]) if described.get("output") else {}
    entered = [event for event in history if event["type"].endswith("StateEntered")]
    succeeded = [event for event in history if event["type"] == "TaskSucceeded"]
    task_states = sum(event["type"] == "TaskStateEntered" for event in entered)
    retries = sum(event["type"] == "TaskScheduled" for event in history) - task_states
    loop_events, state = 0, None
    for event in history:
        if event["type"].endswith("StateEntered"):
            state = event["stateEnteredEventDetails"]["name"]
        loop_events += state in LOOP_STATES
        if event["type"].endswith("StateExited"):
            state = None
    return ExecutionFigures(
        status=described["status"],
        # AWS bills each retry of a state as a transition too.
        transitions=len(entered) + retries,
        task_states=task_states,
        retries=retries,
        lambda_invocations=sum(
            event["type"] == "TaskScheduled" and event["taskScheduledEventDetails"]["resourceType"] == "lambda"
            for event in history
        ),
        polls=sum(event["stateEnteredEventDetails"]["name"] == POLL_STATE for event in entered),
        events=len(history),
        loop_transitions=sum(event["stateEnteredEventDetails"]["name"] in LOOP_STATES for event in entered),
        loop_events=loop_events,
        started=epoch(history[0]["timestamp"]),
        ended=epoch(history[-1]["timestamp"]),
        task_succeeded=epoch(succeeded[-1]["timestamp"]) if succeeded else math.nan,
        job_start=float(output.get("jobStart", math.nan)),
        job_end=float(output.get("jobEnd", math.nan)),
    )
