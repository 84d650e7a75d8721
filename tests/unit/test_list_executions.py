"""The local stack's ListExecutions pages (local_stack/moto_fixes.py): a page token stays valid
while executions change status between pages, as AWS's does."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

WAIT_AN_HOUR = json.dumps({"StartAt": "Wait", "States": {"Wait": {"Type": "Wait", "Seconds": 3600, "End": True}}})


@pytest.fixture
def machine(aws: None) -> Iterator[tuple[Any, str, list[str]]]:
    """A state machine with five RUNNING executions, newest first."""
    sfn = boto3.client("stepfunctions")
    arn = sfn.create_state_machine(
        name="waits", definition=WAIT_AN_HOUR, roleArn="arn:aws:iam::123456789012:role/states"
    )["stateMachineArn"]
    started = [sfn.start_execution(stateMachineArn=arn, name=f"e{n}")["executionArn"] for n in range(5)]
    yield sfn, arn, started[::-1]
    for execution in started:
        if sfn.describe_execution(executionArn=execution)["status"] == "RUNNING":
            sfn.stop_execution(executionArn=execution)


def test_a_token_survives_the_next_execution_leaving_the_filter(machine: tuple[Any, str, list[str]]) -> None:
    sfn, arn, newest_first = machine
    first = sfn.list_executions(stateMachineArn=arn, statusFilter="RUNNING", maxResults=2)
    assert [e["executionArn"] for e in first["executions"]] == newest_first[:2]

    sfn.stop_execution(executionArn=newest_first[2])  # the next page's first execution ends
    rest = sfn.list_executions(stateMachineArn=arn, statusFilter="RUNNING", maxResults=2, nextToken=first["nextToken"])

    assert [e["executionArn"] for e in rest["executions"]] == newest_first[3:]
    assert "nextToken" not in rest


def test_pages_without_a_filter_list_every_execution_once(machine: tuple[Any, str, list[str]]) -> None:
    sfn, arn, newest_first = machine
    pages = sfn.get_paginator("list_executions").paginate(stateMachineArn=arn, PaginationConfig={"PageSize": 2})
    assert [e["executionArn"] for page in pages for e in page["executions"]] == newest_first


def test_a_token_that_names_no_execution_is_refused(machine: tuple[Any, str, list[str]]) -> None:
    sfn, arn, _ = machine
    with pytest.raises(sfn.exceptions.InvalidToken):
        sfn.list_executions(stateMachineArn=arn, nextToken="bm90LWFuLWV4ZWN1dGlvbg==")
