"""Fixtures of the unit tests: invoke the dispatch function and look at what it left in moto."""

from __future__ import annotations

import json
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest

from local_stack.lambda_runtime import Context

Invoke = Callable[[dict[str, Any]], dict[str, Any]]


@pytest.fixture
def invoke(dispatch_app: ModuleType, lambda_context: Context) -> Invoke:
    """Call the handler as Lambda would; returns its result (exceptions propagate)."""

    def call(event: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = dispatch_app.lambda_handler(event, lambda_context)
        return result

    return call


@pytest.fixture
def refuse(invoke: Invoke) -> Callable[[dict[str, Any]], Exception]:
    """Call the handler expecting a refusal; returns the exception Lambda would report."""

    def call(event: dict[str, Any]) -> Exception:
        with pytest.raises(Exception) as caught:  # noqa: PT011 - the error's name is what the tests check
            invoke(event)
        return caught.value

    return call


@pytest.fixture
def commands(deployment: Any) -> Callable[[], list[dict[str, Any]]]:
    """Every SSM command sent so far (ListCommands)."""

    def listed() -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = deployment.ssm.list_commands()["Commands"]
        return found

    return listed


@pytest.fixture
def jobs(deployment: Any) -> Callable[[], list[dict[str, Any]]]:
    """Every item of the job table (a consistent scan)."""

    def scanned() -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = deployment.dynamodb.scan(TableName=deployment.job_table, ConsistentRead=True)[
            "Items"
        ]
        return items

    return scanned


@pytest.fixture
def send_command_requests(dispatch_app: ModuleType) -> list[dict[str, Any]]:
    """The SendCommand requests of the dispatch function's SSM client, as sent on the wire
    (ListCommands does not show everything, e.g. DocumentVersion)."""
    sent: list[dict[str, Any]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        body = params["body"]
        sent.append(json.loads(body.decode() if isinstance(body, bytes) else body))

    dispatch_app.ssm.meta.events.register("before-call.ssm.SendCommand", record)
    return sent
