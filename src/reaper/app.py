"""The reaper function: EventBridge rules and a schedule invoke it (template.yaml).

The handler only routes each event to reap.py with module-scope clients.
"""

from __future__ import annotations

import os
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config

from reaper import reap

CLIENT_CONFIG = Config(retries={"mode": "adaptive", "max_attempts": 10})

logger = Logger()
tracer = Tracer()
dynamodb = boto3.client("dynamodb", config=CLIENT_CONFIG)
ssm = boto3.client("ssm", config=CLIENT_CONFIG)
sfn = boto3.client("stepfunctions", config=CLIENT_CONFIG)
settings = reap.Settings(
    job_table=os.environ["JOB_TABLE"],
    run_document=os.environ["DOCUMENT_NAME"],
    stop_document=os.environ["STOP_DOCUMENT_NAME"],
    slot_table=os.environ["SLOT_TABLE"],
)


class UnknownEvent(ValueError):
    """An event no rule of the template sends: a misconfigured rule, not a job failure."""


def route(event: dict[str, Any]) -> dict[str, Any]:
    kind, detail = event.get("detail-type"), event.get("detail") or {}
    if kind == "Step Functions Execution Status Change":
        changed = reap.execution_ended(dynamodb, ssm, settings, detail["executionArn"], detail["status"])
        return {"jobs": [{"jobId": job_id, "status": status} for job_id, status in changed]}
    if kind == "EC2 Command Invocation Status-change Notification":
        error = reap.command_ended(
            dynamodb, sfn, ssm, settings, detail["command-id"], detail["instance-id"], detail["status"]
        )
        return {"failedWith": error}
    if kind == "EC2 Instance State-change Notification":
        if detail["state"] not in reap.HOST_LOST_STATES:
            return {"failed": []}
        why = f"instance {detail['state']}"
        return {"failed": reap.host_lost(dynamodb, sfn, settings, detail["instance-id"], why)}
    if kind == "EC2 Spot Instance Interruption Warning":
        # Two minutes' notice: its jobs are retried elsewhere now; its slots stay held, so nothing
        # new lands on it, until its state change (terminated) frees them.
        warned = reap.host_lost(dynamodb, sfn, settings, detail["instance-id"], "spot interruption", gone=False)
        return {"failed": warned}
    if kind == "Scheduled Event":
        return reap.sweep(dynamodb, sfn, ssm, settings)
    raise UnknownEvent(f"no route for detail-type {str(kind)[:100]!r}")


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = route(event)
    logger.info("event handled", extra={"detailType": event.get("detail-type"), "result": result})
    return result
