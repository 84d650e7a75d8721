"""The dispatch function: the run-job state machine's callback Task invokes it.

The handler only parses the event and wires module-scope clients into the pure functions of
request.py and dispatch.py. A refused request fails the Task with a named error
(errors.py); nothing is recorded or sent.
"""

from __future__ import annotations

import os
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parameters import SSMProvider
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from dispatch.catalog import CatalogError, JobType, parse_job_type
from dispatch.errors import DeliveryFailed, JobError, UnknownType
from dispatch.jobs import Clients, Settings, TaskContext, dispatch
from dispatch.request import validated
from shared.job_table import token_hash

# Adaptive retries absorb SSM, EC2 and DynamoDB throttling bursts without losing the job.
CLIENT_CONFIG = Config(retries={"mode": "adaptive", "max_attempts": 10})

logger = Logger()
tracer = Tracer()
metrics = Metrics()
ssm = boto3.client("ssm", config=CLIENT_CONFIG)
dynamodb = boto3.client("dynamodb", config=CLIENT_CONFIG)
ec2 = boto3.client("ec2", config=CLIENT_CONFIG)
clients = Clients(ssm=ssm, dynamodb=dynamodb, ec2=ec2)
catalog = SSMProvider(boto3_client=ssm)
settings = Settings(
    job_table=os.environ["JOB_TABLE"],
    document_name=os.environ["DOCUMENT_NAME"],
    pool_name=os.environ["POOL_NAME"],
    region=os.environ["AWS_REGION"],
    log_driver=os.environ["LOG_DRIVER"],
    log_group=os.environ["LOG_GROUP"],
    pull_policy=os.environ["PULL_POLICY"],
    network=os.environ["CONTAINER_NETWORK"],
    delivery_timeout_seconds=int(os.environ["DELIVERY_TIMEOUT_SECONDS"]),
    output_bucket=os.environ["OUTPUT_BUCKET"],
    slot_table=os.environ["SLOT_TABLE"],
    default_slots=int(os.environ["DEFAULT_SLOTS"]),
)
CATALOG_PATH = os.environ["CATALOG_PATH"]
# How stale a catalog entry may be: a swapped image is picked up within this many seconds.
CATALOG_MAX_AGE_SECONDS = int(os.environ["CATALOG_MAX_AGE_SECONDS"])


def load_job_type(name: str) -> JobType:
    """The catalog entry of a job type, cached for CATALOG_MAX_AGE_SECONDS."""
    try:
        raw = catalog.get(CATALOG_PATH + name, max_age=CATALOG_MAX_AGE_SECONDS)
    except GetParameterError as exc:
        # Powertools wraps every error; the SDK's is the one it was raised while handling.
        sdk_error = exc.__context__
        if isinstance(sdk_error, ClientError) and sdk_error.response["Error"]["Code"] == "ParameterNotFound":
            raise UnknownType(f"jobType: {name!r} is not in the job type catalog") from None
        # Throttled or denied after retries: a retryable failure, not an unknown type.
        raise DeliveryFailed(f"reading the catalog entry of {name!r} failed") from exc
    try:
        return parse_job_type(name, str(raw))
    except CatalogError as exc:
        raise UnknownType(f"jobType: the catalog entry of {name!r} is not valid: {exc}") from None


# The event carries the task token: never log it, whatever POWERTOOLS_LOGGER_LOG_EVENT says.
@logger.inject_lambda_context(clear_state=True, log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        task = TaskContext.from_event(event)
        logger.append_keys(jobId=task.job_id, tokenHash=token_hash(task.token), executionArn=task.execution_arn)
        job = validated(event.get("request"), load_job_type)
        try:
            result = dispatch(task, job, settings, clients)
        except (ClientError, BotoCoreError) as exc:
            # An AWS error that survived the adaptive retries: named, so the state machine retries it.
            raise DeliveryFailed(f"AWS call failed: {type(exc).__name__}") from exc
    except JobError as exc:
        metrics.add_dimension(name="reason", value=exc.error_name())
        metrics.add_metric(name="JobsRejected", unit=MetricUnit.Count, value=1)
        logger.warning("job refused", extra={"error": exc.error_name(), "cause": str(exc)})
        raise
    if result.duplicate:
        logger.info("duplicate dispatch ignored", extra={"commandId": result.command_id})
    else:
        metrics.add_metric(name="JobsDispatched", unit=MetricUnit.Count, value=1)
        logger.info("job dispatched", extra={"instanceId": result.instance_id, "commandId": result.command_id})
    return {"jobId": result.job_id, "instanceId": result.instance_id, "commandId": result.command_id}
