"""Contracts between the sample events, the state machine and the dispatch code: the events
are what the RunJob Task sends, and the names the code raises are the names the ASL matches."""

from __future__ import annotations

import inspect
import json
import re

import pytest

from dispatch import errors, request
from dispatch.catalog import parse_job_type

from .support import (
    ASL_PATH,
    BAD_EVENTS,
    DISPATCH_EVENTS,
    EXPECTED,
    GOOD_EVENTS,
    REQUEST_EVENTS,
    ROOT,
    STACK,
    asl_defaults,
    catalog_entries,
    dispatch_event,
    job_request,
    load_json,
)

RUN_JOB = load_json(ASL_PATH)["States"]["RunJob"]
PAYLOAD_KEYS = {key.removesuffix(".$") for key in RUN_JOB["Parameters"]["Payload"]}
CAUGHT = {name for catcher in RUN_JOB["Catch"] for name in catcher["ErrorEquals"]}
RETRIED = {name for retrier in RUN_JOB["Retry"] for name in retrier["ErrorEquals"]}
RAISED = {
    value.error_name()
    for value in vars(errors).values()
    if inspect.isclass(value) and issubclass(value, errors.JobError) and value is not errors.JobError
}
TOKEN_CHARS = re.compile(r"^[A-Za-z0-9+/=_-]+$")


def test_every_dispatch_event_states_its_expected_outcome():
    files = {path.name for path in DISPATCH_EVENTS.glob("*.json")} - {"expected.json"}
    assert files == set(EXPECTED), "events/dispatch/expected.json must list exactly the events beside it"
    assert GOOD_EVENTS
    assert BAD_EVENTS


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_dispatch_event_is_what_the_run_job_task_sends(name):
    event = dispatch_event(name)
    assert set(event) == PAYLOAD_KEYS
    assert isinstance(event["taskToken"], str)
    assert 500 <= len(event["taskToken"]) <= 2048, "use a realistic token (AWS: up to 2,048 chars)"
    assert TOKEN_CHARS.match(event["taskToken"])
    assert event["executionArn"].startswith(f"arn:aws:states:{STACK.region}:{STACK.account}:execution:")
    assert event["stateName"] in load_json(ASL_PATH)["States"]
    assert isinstance(event["retryCount"], int)


@pytest.mark.parametrize("name", BAD_EVENTS)
def test_expected_error_of_a_bad_event_is_one_the_state_machine_catches(name):
    assert EXPECTED[name]["error"] in CAUGHT
    assert EXPECTED[name]["field"]


def test_sample_tokens_and_executions_differ_between_events():
    events = [dispatch_event(name) for name in EXPECTED]
    assert len({event["taskToken"] for event in events}) == len(events)
    assert len({event["executionArn"] for event in events}) == len(events)


REQUEST_FILES = sorted(path.name for path in REQUEST_EVENTS.glob("*.json"))


@pytest.mark.parametrize("name", REQUEST_FILES)
def test_sample_job_request_is_valid(name):
    job_types = {key: parse_job_type(key, entry) for key, entry in catalog_entries(STACK).items()}
    request.validated(job_request(name), job_types.__getitem__)


def test_request_files_cover_both_job_types_with_their_dispatch_events():
    assert {"word-count.json", "checksum.json"} <= set(REQUEST_FILES) & set(GOOD_EVENTS)


@pytest.mark.parametrize("name", sorted(set(REQUEST_FILES) & set(GOOD_EVENTS)))
def test_dispatch_event_carries_the_request_of_the_same_name(name):
    assert dispatch_event(name)["request"] == job_request(name)
    assert job_request(name)["jobType"] == name.removesuffix(".json")


def test_dispatch_defaults_are_the_state_machines_defaults():
    """The Task's TimeoutSecondsPath/HeartbeatSecondsPath use ApplyDefaults' values; the
    function must check the same numbers."""
    assert asl_defaults() == {
        "timeoutSeconds": request.DEFAULT_TIMEOUT_SECONDS,
        "heartbeatSeconds": request.DEFAULT_HEARTBEAT_SECONDS,
    }


def test_every_error_the_function_raises_is_caught_by_run_job():
    assert {"Job.InvalidRequest", "Job.UnknownType", "Job.NoCapacity", "Job.DeliveryFailed"} <= RAISED
    assert sorted(RAISED - CAUGHT) == []


@pytest.mark.parametrize(
    ("name", "retried"),
    [("Job.NoCapacity", True), ("Job.DeliveryFailed", True), ("Job.InvalidRequest", False), ("Job.UnknownType", False)],
)
def test_retry_policy_of_the_functions_errors(name, retried):
    """DESIGN-BRIEF.md, "Error names": capacity and delivery are retried, refusals are not."""
    assert (name in RETRIED) is retried


def readme_error_table() -> dict[str, bool]:
    """The README's error table: each `Job.*` name and whether the state machine retries it."""
    rows = re.findall(r"^\| `(Job\.[A-Za-z]+)` \|.*\| (yes|no)\b[^|]*\|$", (ROOT / "README.md").read_text(), re.M)
    return {name: answer == "yes" for name, answer in rows}


def test_the_readmes_error_table_is_what_run_job_catches_and_retries():
    table = readme_error_table()
    assert len(table) >= 10, "the README's error table was not found"
    assert sorted(set(table) ^ CAUGHT) == [], "the README's Job.* errors and RunJob's Catch differ"
    assert {name for name, retried in table.items() if retried} == RETRIED - {
        name for name in RETRIED if name.startswith("Lambda.")
    }


# SSM's CreateDocument: content "must not exceed 64KB", parameters given at run time included
# (read as 64,000 bytes, the stricter). The run-container command's parameters stay under 2 KB.
DOCUMENT_LIMIT_BYTES = 64_000
RUNTIME_PARAMETERS_BYTES = 2_000


@pytest.mark.parametrize("logical_id", ["RunContainerDocument", "StopContainerDocument"])
def test_each_document_fits_ssms_size_limit_with_its_parameters(logical_id):
    content = json.dumps(STACK.properties(logical_id)["Content"]).encode("utf-8")
    assert len(content) + RUNTIME_PARAMETERS_BYTES <= DOCUMENT_LIMIT_BYTES, f"{logical_id}: {len(content)} bytes"
