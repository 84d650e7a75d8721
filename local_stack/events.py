"""EventBridge for the local stack: the template's rules, AWS's event shapes, real delivery.

The rules come from the reaper's `Events` in template.yaml (patterns and schedule), so the
local stack delivers exactly what the deployed rules would. Watchers turn what happens in
the emulated services into the events AWS emits: execution status changes, command
invocation status changes (from the local agent) and instance state changes.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from local_stack.template import Stack


def matches(pattern: Any, value: Any) -> bool:
    """EventBridge's exact-match subset: lists are alternatives, objects nest."""
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(
            key in value and matches(sub, value[key]) for key, sub in pattern.items()
        )
    if isinstance(value, list):
        return any(item in pattern for item in value)
    return value in pattern


def _rate_seconds(expression: str) -> int:
    number, unit = re.fullmatch(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)", expression).groups()  # type: ignore[union-attr]
    return int(number) * {"minute": 60, "hour": 3600, "day": 86400}[unit.rstrip("s")]


class EventBus:
    def __init__(self, stack: Stack, lambda_client: Any, log_path: Path, sweep_seconds: int | None) -> None:
        self.stack, self.lambda_client, self.log_path = stack, lambda_client, log_path
        self.rules: list[tuple[str, str, dict[str, Any]]] = []  # (rule, function, pattern)
        self.schedules: list[tuple[str, str, int]] = []  # (rule, function, seconds)
        for logical_id, resource in stack.resources.items():
            if resource["Type"] != "AWS::Serverless::Function":
                continue
            function = stack.physical_name(logical_id)
            for rule, spec in stack.properties(logical_id).get("Events", {}).items():
                if spec["Type"] == "EventBridgeRule":
                    self.rules.append((rule, function, spec["Properties"]["Pattern"]))
                elif spec["Type"] == "Schedule":
                    every = sweep_seconds or _rate_seconds(spec["Properties"]["Schedule"])
                    self.schedules.append((rule, function, every))
        self.pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="eventbridge")
        self.stopping = threading.Event()
        self.lock = threading.Lock()

    def publish(self, source: str, detail_type: str, detail: dict[str, Any], resources: list[str]) -> None:
        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": detail_type,
            "source": source,
            "account": self.stack.account,
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": self.stack.region,
            "resources": resources,
            "detail": detail,
        }
        for rule, function, pattern in self.rules:
            if matches(pattern, event):
                self.pool.submit(self._deliver, rule, function, event)

    def _deliver(self, rule: str, function: str, event: dict[str, Any]) -> None:
        reply = self.lambda_client.invoke(FunctionName=function, Payload=json.dumps(event).encode())
        payload = json.loads(reply["Payload"].read() or b"null")
        with self.lock, self.log_path.open("a") as log:
            log.write(
                json.dumps({"rule": rule, "event": event, "error": reply.get("FunctionError"), "result": payload})
                + "\n"
            )

    def start_schedules(self) -> None:
        for rule, function, seconds in self.schedules:
            threading.Thread(target=self._tick, args=(rule, function, seconds), daemon=True).start()

    def _tick(self, rule: str, function: str, seconds: int) -> None:
        while not self.stopping.wait(seconds):
            self._deliver(
                rule,
                function,
                {
                    "version": "0",
                    "id": str(uuid.uuid4()),
                    "detail-type": "Scheduled Event",
                    "source": "aws.events",
                    "account": self.stack.account,
                    "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "region": self.stack.region,
                    "resources": [],
                    "detail": {},
                },
            )

    def stop(self) -> None:
        self.stopping.set()
        self.pool.shutdown(wait=True, cancel_futures=True)


def _millis(value: Any) -> int | None:
    return int(value.timestamp() * 1000) if isinstance(value, datetime) else None


def watch_executions(bus: EventBus, sfn: Any, state_machine_arn: str, interval: float = 0.25) -> None:
    """Step Functions Execution Status Change events, from moto's execution list."""
    seen: dict[str, str] = {}
    while not bus.stopping.wait(interval):
        pages = sfn.get_paginator("list_executions").paginate(stateMachineArn=state_machine_arn)
        for execution in (e for page in pages for e in page["executions"]):
            arn, status = execution["executionArn"], execution["status"]
            if seen.get(arn) == status:
                continue
            seen[arn] = status
            bus.publish(
                "aws.states",
                "Step Functions Execution Status Change",
                {
                    "executionArn": arn,
                    "stateMachineArn": state_machine_arn,
                    "name": execution["name"],
                    "status": status,
                    "startDate": _millis(execution.get("startDate")),
                    "stopDate": _millis(execution.get("stopDate")),
                    "input": None,
                    "output": None,
                },
                [arn],
            )


def watch_instances(bus: EventBus, ec2: Any, on_lost: Callable[[str], None], interval: float = 0.5) -> None:
    """EC2 Instance State-change Notification events, from moto's instances; an instance that
    stops takes its processes with it (on_lost)."""
    seen: dict[str, str] = {}
    while not bus.stopping.wait(interval):
        for reservation in ec2.describe_instances()["Reservations"]:
            for instance in reservation["Instances"]:
                instance_id, state = instance["InstanceId"], instance["State"]["Name"]
                if seen.setdefault(instance_id, state) != state:
                    seen[instance_id] = state
                    if state in ("stopping", "stopped", "shutting-down", "terminated"):
                        on_lost(instance_id)
                    bus.publish(
                        "aws.ec2",
                        "EC2 Instance State-change Notification",
                        {"instance-id": instance_id, "state": state},
                        [bus.stack.arn("ec2", f"instance/{instance_id}")],
                    )


DETAILED_STATUSES = ("DeliveryTimedOut", "Undeliverable", "Terminated")


def command_listener(bus: EventBus) -> Any:
    """The local agent's status listener: EC2 Command Invocation Status-change Notification."""

    def on_change(command: Any, record: dict[str, Any]) -> None:
        bus.publish(
            "aws.ssm",
            "EC2 Command Invocation Status-change Notification",
            {
                "command-id": command.command_id,
                "document-name": command.document_name,
                "instance-id": record["InstanceId"],
                "requested-date-time": command.requested_date_time.isoformat(),
                # AWS reports delivery problems in the detailed status (Status is TimedOut or Failed).
                "status": record["StatusDetails"] if record["StatusDetails"] in DETAILED_STATUSES else record["Status"],
            },
            [bus.stack.arn("ec2", f"instance/{record['InstanceId']}")],
        )

    return on_change


def start_watchers(bus: EventBus, sfn: Any, ec2: Any, state_machine_arn: str, on_lost: Callable[[str], None]) -> None:
    for target, args in ((watch_executions, (bus, sfn, state_machine_arn)), (watch_instances, (bus, ec2, on_lost))):
        threading.Thread(target=target, args=args, daemon=True).start()
    bus.start_schedules()
