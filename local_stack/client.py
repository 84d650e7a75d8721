"""A small client of a running local stack, shared by the demo, the end-to-end tests and the
benchmarks: start executions, wait for them, read their job records and history."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3

TERMINAL = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")
# moto accepts any credentials; these keep boto3 from looking for real ones.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}


def aws_client(service: Any, endpoint_url: str, region: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )


@dataclass(frozen=True)
class Outcome:
    status: str
    error: str | None
    cause: str | None
    output: Any
    execution_arn: str


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    """Bounded wait: True as soon as predicate() holds, False after timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


class LocalStackClient:
    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state

    def client(self, service: str) -> Any:
        return aws_client(service, self.state["endpoint_url"], self.state["region"])

    def start(self, request: dict[str, Any], name: str | None = None) -> str:
        # moto's engine needs an explicit name (PLATFORM-NOTES.md).
        arn: str = self.client("stepfunctions").start_execution(
            stateMachineArn=self.state["state_machine_arn"],
            name=name or f"job-{uuid.uuid4().hex[:12]}",
            input=json.dumps(request),
        )["executionArn"]
        return arn

    def describe(self, execution_arn: str) -> dict[str, Any]:
        described: dict[str, Any] = self.client("stepfunctions").describe_execution(executionArn=execution_arn)
        return described

    def wait(self, execution_arn: str, timeout: float = 120) -> Outcome:
        deadline = time.monotonic() + timeout
        described = self.describe(execution_arn)
        while described["status"] not in TERMINAL and time.monotonic() < deadline:
            time.sleep(0.25)
            described = self.describe(execution_arn)
        if described["status"] not in TERMINAL:
            raise TimeoutError(f"{execution_arn} still {described['status']} after {timeout} s")
        output = json.loads(described["output"]) if described.get("output") else None
        return Outcome(described["status"], described.get("error"), described.get("cause"), output, execution_arn)

    def run(self, request: dict[str, Any], timeout: float = 120) -> Outcome:
        return self.wait(self.start(request), timeout)

    def history(self, execution_arn: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = self.client("stepfunctions").get_execution_history(
            executionArn=execution_arn, maxResults=1000
        )["events"]
        return events

    def job_ids(self, execution_arn: str) -> list[str]:
        found = self.client("dynamodb").query(
            TableName=self.state["job_table"],
            IndexName="byExecution",
            KeyConditionExpression="executionArn = :arn",
            ExpressionAttributeValues={":arn": {"S": execution_arn}},
        )["Items"]
        return sorted(item["jobId"]["S"] for item in found)

    def job(self, job_id: str) -> dict[str, Any]:
        item: dict[str, Any] = self.client("dynamodb").get_item(
            TableName=self.state["job_table"], Key={"jobId": {"S": job_id}}, ConsistentRead=True
        )["Item"]
        return item

    def commands(self) -> list[dict[str, Any]]:
        commands: list[dict[str, Any]] = self.client("ssm").list_commands()["Commands"]
        return commands
