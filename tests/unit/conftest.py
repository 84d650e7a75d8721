"""Fixtures of the unit tests: invoke the dispatch function and look at what it left in moto."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest

from local_stack import resources, throttle
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


def recorded_requests(client: Any, event_name: str) -> list[dict[str, Any]]:
    """The JSON bodies of a client's requests as sent on the wire, from botocore's `event_name`."""
    sent: list[dict[str, Any]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        body = params["body"]
        sent.append(json.loads(body.decode() if isinstance(body, bytes) else body))

    client.meta.events.register(event_name, record)
    return sent


@pytest.fixture
def send_command_requests(dispatch_app: ModuleType) -> list[dict[str, Any]]:
    """The SendCommand requests of the dispatch function's SSM client, as sent on the wire
    (ListCommands does not show everything, e.g. DocumentVersion)."""
    return recorded_requests(dispatch_app.ssm, "before-call.ssm.SendCommand")


@pytest.fixture
def slot_holders(deployment: Any) -> Callable[[], dict[str, set[str]]]:
    """The slot table as instance id -> the job ids holding a slot there (a consistent scan)."""

    def scanned() -> dict[str, set[str]]:
        items = deployment.dynamodb.scan(TableName=deployment.slot_table, ConsistentRead=True)["Items"]
        return {item["instanceId"]["S"]: set(item.get("jobs", {}).get("SS", [])) for item in items}

    return scanned


@pytest.fixture
def reaper_app(deployment: Any, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """`reaper.app`, (re)imported inside moto with the function's environment from the template."""
    for key, value in resources.function_environment(deployment.stack, "ReaperFunction").items():
        monkeypatch.setenv(key, value)
    if "reaper.app" in sys.modules:
        return importlib.reload(sys.modules["reaper.app"])
    return importlib.import_module("reaper.app")


@pytest.fixture
def failed_tasks(reaper_app: ModuleType) -> list[dict[str, Any]]:
    """SendTaskFailure requests of the reaper's Step Functions client (moto answers InvalidToken
    for the sample tokens, which the reaper takes as a task closed already)."""
    return recorded_requests(reaper_app.sfn, "before-call.states.SendTaskFailure")


@pytest.fixture
def throttling() -> Iterator[ModuleType]:
    """local_stack.throttle, installed in this process's moto and disarmed after the test."""
    throttle.install()
    yield throttle
    throttle.disarm()
