"""The dispatch function against moto: what it sends, what it records, what it refuses.

Every case goes through `dispatch.app.lambda_handler` with the template's resources in moto
(tests/conftest.py). Only AWS is emulated; the request checks, the catalog and the job
record are the real code.
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import datetime, timedelta
from typing import Any

import pytest

from local_stack import moto_fixes, resources

from .support import (
    BAD_EVENTS,
    DIGEST,
    EXPECTED,
    GOOD_EVENTS,
    HOSTILE,
    REPOSITORY,
    SAMPLE_TOKEN,
    SECRET_ARN,
    SECRET_PARAMETER,
    asl_defaults,
    catalog_entries,
    catalog_parameter,
    compact_json,
    dispatch_event,
    event_for,
    expected_job_id,
    job_record_attributes,
    job_request,
    leaked,
    raised,
    run_together,
)

WORD_COUNT = job_request("word-count.json")
CHECKSUM = job_request("checksum.json")
HOST_MARGIN_SECONDS = 300  # docs/design.md: executionTimeout is the job's timeout + 300 s
RETENTION_SECONDS = 30 * 24 * 3600  # docs/design.md: expiresAt is created + timeout + 30 days
MAX_INPUT_BYTES = 256 * 1024  # DESIGN-BRIEF.md: Step Functions' payload limit
THREAD_TIMEOUT_SECONDS = 20


def get_job(deployment: Any, job_id: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = deployment.dynamodb.get_item(
        TableName=deployment.job_table, Key={"jobId": {"S": job_id}}, ConsistentRead=True
    ).get("Item")
    return found


def recorded_image(deployment: Any, result: dict[str, Any]) -> str:
    item = get_job(deployment, result["jobId"])
    assert item is not None
    image: str = item["image"]["S"]
    return image


def resolved_timeouts(request: dict[str, Any]) -> tuple[int, int]:
    defaults = asl_defaults()
    return (
        request.get("timeoutSeconds", defaults["timeoutSeconds"]),
        request.get("heartbeatSeconds", defaults["heartbeatSeconds"]),
    )


def assert_refused(exc: Exception, error: str, field: str) -> None:
    """Refused with the named error (what Lambda reports as errorType), a cause naming the
    field, and a cause that is one bounded, printable line (it ends up in the execution)."""
    cause = str(exc)
    assert type(exc).__name__ == error, f"{type(exc).__name__}: {cause}"
    assert field in cause, cause
    assert len(cause) <= 1024
    assert cause.isprintable(), repr(cause)


def assert_nothing_sent(commands: Any, jobs: Any) -> None:
    assert commands() == []
    assert jobs() == []


# --- good events -------------------------------------------------------------------------


@pytest.mark.parametrize("name", GOOD_EVENTS)
def test_good_event_sends_one_command_with_job_id_and_settings_only(
    name, deployment, stack, invoke, commands, send_command_requests
):
    event = dispatch_event(name)
    result = invoke(event)

    [command] = commands()
    job_id = expected_job_id(event)
    env = resources.function_environment(stack, "DispatchFunction")
    timeout, _ = resolved_timeouts(event["request"])
    assert command["DocumentName"] == deployment.run_container_document
    assert command["Parameters"] == {
        "JobId": [job_id],
        "JobTable": [deployment.job_table],
        "Region": [stack.region],
        "PullPolicy": [env["PULL_POLICY"]],
        "Network": [env["CONTAINER_NETWORK"]],
        "LogDriver": [env["LOG_DRIVER"]],
        "LogGroup": [env["LOG_GROUP"]],
        "executionTimeout": [str(timeout + HOST_MARGIN_SECONDS)],
    }
    [request] = send_command_requests
    assert request["DocumentVersion"] == "$LATEST"
    assert request["TimeoutSeconds"] == int(env["DELIVERY_TIMEOUT_SECONDS"])
    assert 30 <= request["TimeoutSeconds"] <= 2_592_000  # SendCommand's bounds
    [instance_id] = request["InstanceIds"]
    assert "Targets" not in request
    assert instance_id in deployment.instance_ids
    assert result == {"jobId": job_id, "instanceId": instance_id, "commandId": command["CommandId"]}
    assert leaked([command, request], event["taskToken"], event["request"].get("input", {})) == []


@pytest.mark.parametrize("name", GOOD_EVENTS)
def test_good_event_records_every_attribute_of_the_job_record(
    name, deployment, stack, invoke, commands, send_command_requests
):
    event = dispatch_event(name)
    request = event["request"]
    before = time.time()
    invoke(event)
    after = time.time()

    [command] = commands()
    item = get_job(deployment, expected_job_id(event))
    assert item is not None
    documented = job_record_attributes()
    assert set(item) == set(documented), "the job record differs from docs/design.md"
    for attribute, kind in documented.items():
        assert list(item[attribute]) == [kind], attribute

    entry = catalog_entries(stack)[request["jobType"]]
    timeout, heartbeat = resolved_timeouts(request)
    stored_input = item["input"]["S"]
    assert json.loads(stored_input) == request.get("input", {})
    assert stored_input == compact_json(request.get("input", {}))
    assert item["inputSha256"]["S"] == hashlib.sha256(stored_input.encode("utf-8")).hexdigest()
    assert item["token"]["S"] == event["taskToken"]
    assert item["tokenHash"]["S"] == hashlib.sha256(event["taskToken"].encode()).hexdigest()[:12]
    assert item["status"]["S"] == "DISPATCHED"
    assert item["commandId"]["S"] == command["CommandId"]
    assert [item["instanceId"]["S"]] == send_command_requests[0]["InstanceIds"]
    assert {key: item[key]["S"] for key in ("executionArn", "stateName", "stateEnteredTime")} == {
        key: event[key] for key in ("executionArn", "stateName", "stateEnteredTime")
    }
    assert int(item["retryCount"]["N"]) == event["retryCount"]
    assert item["jobType"]["S"] == request["jobType"]
    assert item["image"]["S"] == request.get("image", entry["image"])
    assert [arg["S"] for arg in item["command"]["L"]] == entry["command"]
    assert float(item["cpu"]["N"]) == entry["cpu"]
    assert int(item["memoryMiB"]["N"]) == entry["memoryMiB"]
    assert int(item["pidsLimit"]["N"]) == entry["pidsLimit"]
    assert item["readOnlyRootFs"]["BOOL"] is entry["readOnlyRootFs"]
    # The job type's environment, plus the output bucket the callback wrapper writes large outputs to.
    env = resources.function_environment(stack, "DispatchFunction")
    assert {key: value["S"] for key, value in item["env"]["M"].items()} == {
        **entry["env"],
        "OUTPUT_BUCKET": env["OUTPUT_BUCKET"],
    }
    assert {key: value["S"] for key, value in item["secrets"]["M"].items()} == entry.get("secrets", {})
    assert int(item["stopGraceSeconds"]["N"]) == entry["stopGraceSeconds"]
    assert int(item["timeoutSeconds"]["N"]) == timeout
    assert int(item["heartbeatSeconds"]["N"]) == heartbeat
    created = datetime.fromisoformat(item["createdAt"]["S"])
    updated = datetime.fromisoformat(item["updatedAt"]["S"])
    assert created.utcoffset() == updated.utcoffset() == timedelta(0)
    assert before - 1 <= created.timestamp() <= updated.timestamp() <= after + 1
    expires = int(item["expiresAt"]["N"])
    assert int(before) + timeout + RETENTION_SECONDS <= expires <= int(after) + 1 + timeout + RETENTION_SECONDS


# --- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", BAD_EVENTS)
def test_bad_event_is_refused_with_its_named_error(name, refuse, commands, jobs):
    exc = refuse(dispatch_event(name))
    assert_refused(exc, EXPECTED[name]["error"], EXPECTED[name]["field"])
    assert_nothing_sent(commands, jobs)


def _without(request: dict[str, Any], key: str) -> dict[str, Any]:
    return {name: value for name, value in request.items() if name != key}


# (case id, request, error, field the cause names)
BAD_REQUESTS: list[tuple[str, Any, str, str]] = [
    *[(f"request-{type(value).__name__}", value, "Job.InvalidRequest", "request") for value in ([], "x", 42, None)],
    ("jobType-missing", _without(WORD_COUNT, "jobType"), "Job.InvalidRequest", "jobType"),
    ("jobType-null", {**WORD_COUNT, "jobType": None}, "Job.InvalidRequest", "jobType"),
    ("jobType-number", {**WORD_COUNT, "jobType": 7}, "Job.InvalidRequest", "jobType"),
    ("jobType-bool", {**WORD_COUNT, "jobType": True}, "Job.InvalidRequest", "jobType"),
    ("jobType-list", {**WORD_COUNT, "jobType": ["word-count"]}, "Job.InvalidRequest", "jobType"),
    ("jobType-uppercase", {**WORD_COUNT, "jobType": "Word-Count"}, "Job.InvalidRequest", "jobType"),
    ("jobType-leading-dash", {**WORD_COUNT, "jobType": "-word-count"}, "Job.InvalidRequest", "jobType"),
    ("jobType-64-chars", {**WORD_COUNT, "jobType": "a" * 64}, "Job.InvalidRequest", "jobType"),
    *[
        (f"jobType-{case}", {**WORD_COUNT, "jobType": text}, "Job.InvalidRequest", "jobType")
        for case, text in HOSTILE.items()
    ],
    ("jobType-unknown", {**WORD_COUNT, "jobType": "thumbnail"}, "Job.UnknownType", "jobType"),
    ("jobType-unknown-63-chars", {**WORD_COUNT, "jobType": "a" * 63}, "Job.UnknownType", "jobType"),
    ("jobType-unknown-1-char", {**WORD_COUNT, "jobType": "0"}, "Job.UnknownType", "jobType"),
    *[
        (f"input-{type(value).__name__}", {**WORD_COUNT, "input": value}, "Job.InvalidRequest", "input")
        for value in ("text", ["a"], 1, 1.5, True, None)
    ],
    *[
        (f"timeoutSeconds-{case}", {**WORD_COUNT, "timeoutSeconds": value}, "Job.InvalidRequest", "timeoutSeconds")
        for case, value in [
            ("zero", 0),
            ("negative", -1),
            ("above-max", 3601),
            ("huge", 2**63),
            ("float", 1.5),
            ("integral-float", 900.0),
            ("string", "900"),
            ("bool", True),
            ("null", None),
            ("object", {}),
            *[(f"hostile-{case}", text) for case, text in HOSTILE.items()],
        ]
    ],
    *[
        (
            f"heartbeatSeconds-{case}",
            {**WORD_COUNT, "heartbeatSeconds": value},
            "Job.InvalidRequest",
            "heartbeatSeconds",
        )
        for case, value in [
            ("zero", 0),
            ("negative", -5),
            ("above-max", 601),
            ("float", 120.5),
            ("string", "120"),
            ("bool", False),
            ("null", None),
            ("list", [120]),
            *[(f"hostile-{case}", text) for case, text in HOSTILE.items()],
        ]
    ],
    (
        "heartbeatSeconds-above-timeout",
        {**CHECKSUM, "timeoutSeconds": 600, "heartbeatSeconds": 700},
        "Job.InvalidRequest",
        "heartbeatSeconds",
    ),
    (
        "heartbeatSeconds-default-above-timeout",
        {**_without(WORD_COUNT, "heartbeatSeconds"), "timeoutSeconds": 60},
        "Job.InvalidRequest",
        "heartbeatSeconds",
    ),
    (
        "timeoutSeconds-default-above-max",
        {"jobType": "word-count", "timeoutSeconds": 3601},
        "Job.InvalidRequest",
        "timeoutSeconds",
    ),
    *[
        (f"image-{case}", {**CHECKSUM, "image": value}, "Job.InvalidRequest", "image")
        for case, value in [
            *HOSTILE.items(),
            ("null", None),
            ("number", 1),
            ("list", [REPOSITORY + ":x"]),
            ("shell-in-tag", f"{REPOSITORY}:x;reboot"),
            ("substitution-in-tag", f"{REPOSITORY}:$(reboot)"),
            ("backticks-in-tag", f"{REPOSITORY}:`id`"),
            ("newline-after-tag", f"{REPOSITORY}:x\n"),
            ("space-option", f"{REPOSITORY}:x --privileged"),
            ("traversal-in-path", f"{REPOSITORY}/../../evil:x"),
            ("unicode-tag", f"{REPOSITORY}:grüße"),
            ("nul-in-tag", f"{REPOSITORY}:x\x00"),
            ("too-long", f"{REPOSITORY}/{'a' * 600}:x"),
            ("short-digest", f"{REPOSITORY}@{DIGEST[:-1]}"),
            ("md5-digest", f"{REPOSITORY}@md5:{'0' * 32}"),
        ]
    ],
]
_UNKNOWN_KEYS = {
    "plain": "priority",
    "case": "JobType",
    "snake": "job_type",
    "padded": " jobType",
    "proto": "__proto__",
    "taskToken": "taskToken",
    "command": "command",
    "env": "env",
    "privileged": "privileged",
    **{f"hostile-{case}": text for case, text in HOSTILE.items()},
}
BAD_REQUESTS += [
    (f"unknown-field-{case}", {**WORD_COUNT, key: "x"}, "Job.InvalidRequest", repr(key[:64]))
    for case, key in _UNKNOWN_KEYS.items()
]


@pytest.mark.parametrize(
    ("request_body", "error", "field"), [case[1:] for case in BAD_REQUESTS], ids=[case[0] for case in BAD_REQUESTS]
)
def test_bad_request_is_refused_before_anything_is_recorded_or_sent(request_body, error, field, refuse, commands, jobs):
    exc = refuse(event_for(request_body))
    assert_refused(exc, error, field)
    assert_nothing_sent(commands, jobs)


# What the state machine itself puts in the event: refused too if anyone invokes the function directly.
BAD_CONTEXTS = [
    ("taskToken-missing", {"taskToken": None}, "taskToken"),
    ("taskToken-empty", {"taskToken": ""}, "taskToken"),
    ("taskToken-too-long", {"taskToken": "A" * 2049}, "taskToken"),
    ("taskToken-number", {"taskToken": 12345}, "taskToken"),
    ("executionArn-missing", {"executionArn": None}, "executionArn"),
    ("executionArn-empty", {"executionArn": ""}, "executionArn"),
    ("stateName-number", {"stateName": 1}, "stateName"),
    ("stateEnteredTime-missing", {"stateEnteredTime": None}, "stateEnteredTime"),
    ("retryCount-negative", {"retryCount": -1}, "retryCount"),
    ("retryCount-string", {"retryCount": "0"}, "retryCount"),
    ("retryCount-bool", {"retryCount": False}, "retryCount"),
    ("retryCount-float", {"retryCount": 1.0}, "retryCount"),
]


@pytest.mark.parametrize(("context", "field"), [case[1:] for case in BAD_CONTEXTS], ids=[c[0] for c in BAD_CONTEXTS])
def test_event_without_the_task_context_is_refused(context, field, refuse, commands, jobs):
    event = event_for(WORD_COUNT)
    event.update(context)
    event = {key: value for key, value in event.items() if value is not None}
    assert_refused(refuse(event), "Job.InvalidRequest", field)
    assert_nothing_sent(commands, jobs)


def test_token_of_the_maximum_length_is_accepted(invoke, deployment):
    token = (SAMPLE_TOKEN * 3)[:2048]
    event = event_for(WORD_COUNT, taskToken=token)
    invoke(event)
    item = get_job(deployment, expected_job_id(event))
    assert item is not None
    assert item["token"]["S"] == token


def test_hostile_strings_inside_the_input_are_data_recorded_verbatim(
    deployment, invoke, commands, send_command_requests
):
    job_input = {"strings": list(HOSTILE.values()), **{case: text for case, text in HOSTILE.items() if text}}
    event = event_for({**CHECKSUM, "input": job_input})
    invoke(event)
    item = get_job(deployment, expected_job_id(event))
    assert item is not None
    assert json.loads(item["input"]["S"]) == job_input
    assert leaked([commands(), send_command_requests], event["taskToken"], job_input) == []


# --- replays and attempts -----------------------------------------------------------------


def test_replayed_event_sends_one_command_and_keeps_the_record(deployment, invoke, commands):
    event = event_for(WORD_COUNT)
    first = invoke(event)
    record = get_job(deployment, first["jobId"])
    second = invoke(dict(event))
    assert second == first
    assert len(commands()) == 1
    assert get_job(deployment, first["jobId"]) == record


def test_job_id_does_not_depend_on_the_token(deployment, invoke, commands):
    event = event_for(WORD_COUNT)
    first = invoke(event)
    second = invoke({**event, "taskToken": SAMPLE_TOKEN[::-1]})
    assert second["jobId"] == first["jobId"] == expected_job_id(event)
    assert len(commands()) == 1
    record = get_job(deployment, first["jobId"])
    assert record is not None
    assert record["token"]["S"] == event["taskToken"]


@pytest.mark.parametrize(
    "change", [{"retryCount": 1}, {"stateEnteredTime": "2025-06-02T09:31:07.001Z"}, {"stateName": "RunJobAgain"}]
)
def test_a_new_attempt_is_a_new_job(change, deployment, invoke, commands, jobs):
    event = event_for(WORD_COUNT)
    first = invoke(event)
    retry = {**event, **change}
    second = invoke(retry)
    assert second["jobId"] == expected_job_id(retry) != first["jobId"]
    assert sorted(command["Parameters"]["JobId"][0] for command in commands()) == sorted(
        [first["jobId"], second["jobId"]]
    )
    assert len(jobs()) == 2


def test_concurrent_deliveries_send_one_command(invoke, commands, jobs):
    event = event_for(WORD_COUNT)

    results = run_together([lambda: invoke(dict(event))] * 2, THREAD_TIMEOUT_SECONDS)

    assert raised(results) == []
    assert len(commands()) == 1
    assert len(jobs()) == 1
    assert {result["jobId"] for result in results} == {expected_job_id(event)}


def test_delivery_while_the_first_is_between_record_and_send_sends_nothing(dispatch_app, invoke, commands, jobs):
    """The second delivery arrives after the first recorded the job and before it sent the
    command: the record decides, the second sends nothing."""
    event = event_for(WORD_COUNT)
    second: list[Any] = []

    def deliver_again_before_first_send(**_: Any) -> None:
        if not second:
            second.extend(run_together([lambda: invoke(dict(event))], THREAD_TIMEOUT_SECONDS))

    dispatch_app.ssm.meta.events.register("before-call.ssm.SendCommand", deliver_again_before_first_send)
    first = invoke(event)
    assert raised(second) == []
    [command] = commands()
    assert first["commandId"] == command["CommandId"]
    assert second[0]["jobId"] == first["jobId"]
    assert len(jobs()) == 1


# --- worker instances ----------------------------------------------------------------------


def _terminate_all(deployment: Any) -> None:
    deployment.ec2.terminate_instances(InstanceIds=deployment.instance_ids)


def _stop_all(deployment: Any) -> None:
    deployment.ec2.stop_instances(InstanceIds=deployment.instance_ids)


def _lose_all_agents(deployment: Any) -> None:
    moto_fixes.lost_instances.update(deployment.instance_ids)


def _move_to_another_pool(deployment: Any) -> None:
    deployment.ec2.create_tags(
        Resources=deployment.instance_ids, Tags=[{"Key": resources.POOL_TAG, "Value": "another-pool"}]
    )


@pytest.mark.parametrize("take_away", [_terminate_all, _stop_all, _lose_all_agents, _move_to_another_pool])
def test_no_online_instance_in_the_pool_is_no_capacity(take_away, deployment, refuse, commands, jobs):
    take_away(deployment)
    exc = refuse(event_for(WORD_COUNT))
    assert type(exc).__name__ == "Job.NoCapacity"
    assert_nothing_sent(commands, jobs)


# The instance a command was sent to is read from the request: moto 5.2.5 lists every EC2
# instance of the region on a command sent with InstanceIds and no Targets. Placement over
# slots is tested in test_placement.py.


def test_jobs_go_only_to_online_instances_of_the_pool(deployment, invoke, send_command_requests):
    online = deployment.instance_ids[1]
    moto_fixes.lost_instances.update(set(deployment.instance_ids) - {online})
    deployment.ec2.create_tags(Resources=[online], Tags=[{"Key": "run-job:slots", "Value": "6"}])
    for _ in range(6):
        invoke(event_for(WORD_COUNT))
    assert [request["InstanceIds"] for request in send_command_requests] == [[online]] * 6


def _remove_instances_at_send(deployment: Any, dispatch_app: Any) -> None:
    """The instance goes away between the instance lookup and SendCommand (InvalidInstanceId)."""
    dispatch_app.ssm.meta.events.register("before-call.ssm.SendCommand", lambda **_: _terminate_all(deployment))


def _delete_document(deployment: Any, dispatch_app: Any) -> None:
    deployment.ssm.delete_document(Name=deployment.run_container_document)


@pytest.mark.parametrize(
    ("break_delivery", "code"),
    [(_remove_instances_at_send, "InvalidInstanceId"), (_delete_document, "InvalidDocument")],
)
def test_send_command_failure_is_delivery_failed_and_marks_the_job_failed(
    break_delivery, code, deployment, dispatch_app, refuse, commands
):
    break_delivery(deployment, dispatch_app)
    event = event_for(WORD_COUNT)
    exc = refuse(event)
    assert type(exc).__name__ == "Job.DeliveryFailed"
    assert code in str(exc)
    assert commands() == []
    item = get_job(deployment, expected_job_id(event))
    assert item is not None
    assert item["status"]["S"] == "FAILED"
    assert "commandId" not in item
    # No command will ever end, so nothing but dispatch itself can give the slot back.
    held = deployment.dynamodb.scan(TableName=deployment.slot_table, ConsistentRead=True)["Items"]
    assert [item.get("jobs") for item in held] == [None] * len(held)


# --- the job type catalog at dispatch -------------------------------------------------------


def _put_entry(deployment: Any, job_type: str, entry: Any) -> None:
    value = entry if isinstance(entry, str) else json.dumps(entry)
    deployment.ssm.put_parameter(
        Name=catalog_parameter(deployment.stack, job_type), Value=value, Type="String", Overwrite=True
    )


@pytest.mark.parametrize(
    ("entry_change", "field"),
    [
        ({"image": "--privileged"}, "image"),
        ({"maxTimeoutSeconds": None}, "maxTimeoutSeconds"),
        ({"env": {"TASK_TOKEN": "x"}}, "env"),
        ({"cpu": 0}, "cpu"),
        ({"privileged": True}, "privileged"),
        ("{not json", "entry"),
        ("[]", "entry"),
    ],
    ids=["image", "maxTimeoutSeconds", "env", "cpu", "unknown-field", "not-json", "not-object"],
)
def test_invalid_catalog_entry_is_unknown_type_naming_the_field(
    entry_change, field, deployment, refuse, commands, jobs
):
    entry = catalog_entries(deployment.stack)["word-count"]
    if isinstance(entry_change, dict):
        entry = {**entry, **entry_change}
        entry = {key: value for key, value in entry.items() if value is not None}
    _put_entry(deployment, "word-count", entry if isinstance(entry_change, dict) else entry_change)
    exc = refuse(event_for(WORD_COUNT))
    assert_refused(exc, "Job.UnknownType", field)
    assert "word-count" in str(exc)
    assert_nothing_sent(commands, jobs)


def test_swapping_the_image_in_the_catalog_changes_the_next_job(deployment, dispatch_app, invoke):
    """One put-parameter --overwrite swaps a job type's image. The function caches catalog
    entries for CATALOG_MAX_AGE_SECONDS (Powertools Parameters); the test clears the
    function's own provider cache instead of waiting (parameters.clear_caches() only clears
    Powertools' default providers, not the SSMProvider the function builds)."""
    entry = catalog_entries(deployment.stack)["word-count"]
    first = invoke(event_for(WORD_COUNT))
    swapped = f"{REPOSITORY}:word-count-2"
    _put_entry(deployment, "word-count", {**entry, "image": swapped})
    dispatch_app.catalog.clear_cache()
    second = invoke(event_for(WORD_COUNT))
    images = [recorded_image(deployment, result) for result in (first, second)]
    assert images == [entry["image"], swapped]


def test_secret_references_are_recorded_and_never_sent(deployment, invoke, commands, send_command_requests):
    """The host side resolves them when the job starts; the command carries the job id only."""
    secrets = {"DB_PASSWORD": SECRET_ARN, "API_KEY": SECRET_PARAMETER}
    _put_entry(deployment, "word-count", {**catalog_entries(deployment.stack)["word-count"], "secrets": secrets})
    result = invoke(event_for(WORD_COUNT))
    item = get_job(deployment, result["jobId"])
    assert item is not None
    assert {name: ref["S"] for name, ref in item["secrets"]["M"].items()} == secrets
    sent = json.dumps([commands(), send_command_requests], default=str)
    assert not [ref for ref in secrets.values() if ref in sent]
    assert not [name for name in secrets if name in sent]


def test_digest_pinned_catalog_image_is_dispatched(deployment, invoke):
    pinned = f"{REPOSITORY}@{DIGEST}"
    _put_entry(deployment, "word-count", {**catalog_entries(deployment.stack)["word-count"], "image": pinned})
    result = invoke(event_for(WORD_COUNT))
    assert recorded_image(deployment, result) == pinned


@pytest.mark.parametrize(
    "image",
    [f"{REPOSITORY}:checksum-2", f"{REPOSITORY}@{DIGEST}", f"{REPOSITORY}:checksum-2@{DIGEST}", f"{REPOSITORY}/x:1"],
    ids=["tag", "digest", "tag-and-digest", "nested-repository"],
)
def test_image_override_under_an_allowed_prefix_is_dispatched(image, deployment, invoke):
    result = invoke(event_for({**CHECKSUM, "image": image}))
    assert recorded_image(deployment, result) == image


@pytest.mark.parametrize(
    ("job_request", "image"),
    [
        (CHECKSUM, f"{REPOSITORY}-evil:latest"),
        (CHECKSUM, f"{REPOSITORY}evil:latest"),
        (CHECKSUM, f"{REPOSITORY}-evil@{DIGEST}"),
        (CHECKSUM, REPOSITORY.replace("123456789012", "210987654321") + ":checksum-1"),
        (CHECKSUM, REPOSITORY.replace("us-east-1", "eu-west-1") + ":checksum-1"),
        (CHECKSUM, "evil.example.com/run-job-worker:checksum-1"),
        (CHECKSUM, "run-job-worker:checksum-1"),
        (CHECKSUM, REPOSITORY.rsplit("/", 1)[0] + "/other:checksum-1"),
        (WORD_COUNT, f"{REPOSITORY}:word-count-1"),
        (WORD_COUNT, f"{REPOSITORY}@{DIGEST}"),
    ],
    ids=[
        "dash-suffix",
        "no-separator",
        "dash-suffix-digest",
        "other-account",
        "other-region",
        "other-registry",
        "docker-hub",
        "sibling-repository",
        "word-count-own-repository",
        "word-count-digest",
    ],
)
def test_image_override_outside_the_allowed_prefixes_is_refused(job_request, image, refuse, commands, jobs):
    assert_refused(refuse(event_for({**job_request, "image": image})), "Job.InvalidRequest", "image")
    assert_nothing_sent(commands, jobs)


# --- input size ------------------------------------------------------------------------------


def _input_of_bytes(size: int, unit: str = "x") -> dict[str, str]:
    """An input whose compact JSON is exactly `size` UTF-8 bytes, made of `unit` repeated."""
    frame = len(compact_json({"text": ""}).encode())
    unit_bytes = len(compact_json(unit).encode()) - 2
    count, rest = divmod(size - frame, unit_bytes)
    job_input = {"text": unit * count + "x" * rest}
    assert len(compact_json(job_input).encode()) == size
    return job_input


def test_200_kib_unicode_input_is_recorded_byte_for_byte(deployment, invoke, commands, send_command_requests):
    job_input = _input_of_bytes(200 * 1024, 'grüße 世界 🎉 "q" \\ \t\n ')
    event = event_for({**CHECKSUM, "input": job_input})
    invoke(event)
    item = get_job(deployment, expected_job_id(event))
    assert item is not None
    stored = item["input"]["S"].encode("utf-8")
    assert stored == compact_json(job_input).encode("utf-8")
    assert item["inputSha256"]["S"] == hashlib.sha256(stored).hexdigest()
    assert leaked([commands(), send_command_requests], event["taskToken"], job_input) == []


def test_input_of_exactly_the_limit_is_accepted(deployment, invoke):
    event = event_for({**CHECKSUM, "input": _input_of_bytes(MAX_INPUT_BYTES)})
    invoke(event)
    assert get_job(deployment, expected_job_id(event)) is not None


@pytest.mark.parametrize("size", [MAX_INPUT_BYTES + 1, 257 * 1024], ids=["limit-plus-one", "257-kib"])
def test_input_above_the_limit_is_refused(size, refuse, commands, jobs):
    exc = refuse(event_for({**CHECKSUM, "input": _input_of_bytes(size, "é")}))
    assert_refused(exc, "Job.InvalidRequest", "input")
    assert_nothing_sent(commands, jobs)


def test_input_with_a_lone_surrogate_is_invalid_request(refuse, commands, jobs):
    """JSON may escape half a surrogate pair ("\\ud800"); it has no UTF-8 form."""
    request = json.loads('{"jobType": "checksum", "input": {"text": "\\ud800"}}')
    assert_refused(refuse(event_for(request)), "Job.InvalidRequest", "input")
    assert_nothing_sent(commands, jobs)


# --- the token stays secret -------------------------------------------------------------------

SECRET_INPUT = {"text": "input-marker-7f3a9c"}


def _dispatched(deployment: Any, dispatch_app: Any, invoke: Any, event: dict[str, Any]) -> None:
    invoke(event)


def _replayed(deployment: Any, dispatch_app: Any, invoke: Any, event: dict[str, Any]) -> None:
    invoke(event)
    invoke(event)


def _invalid(deployment: Any, dispatch_app: Any, invoke: Any, event: dict[str, Any]) -> None:
    invoke({**event, "request": {**event["request"], "timeoutSeconds": 99_999}})


def _unknown(deployment: Any, dispatch_app: Any, invoke: Any, event: dict[str, Any]) -> None:
    invoke({**event, "request": {**event["request"], "jobType": "thumbnail"}})


def _no_capacity(deployment: Any, dispatch_app: Any, invoke: Any, event: dict[str, Any]) -> None:
    _terminate_all(deployment)
    invoke(event)


def _delivery_failed(deployment: Any, dispatch_app: Any, invoke: Any, event: dict[str, Any]) -> None:
    _remove_instances_at_send(deployment, dispatch_app)
    invoke(event)


def _bad_catalog_entry(deployment: Any, dispatch_app: Any, invoke: Any, event: dict[str, Any]) -> None:
    _put_entry(deployment, "word-count", {**catalog_entries(deployment.stack)["word-count"], "cpu": 0})
    invoke(event)


@pytest.fixture(params=["as-deployed", "debug"])
def log_verbosity(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """ "debug": what an operator might switch on to investigate, the event logging included (read
    when the handler is decorated, so this fixture comes before `dispatch_app`)."""
    if request.param == "debug":
        monkeypatch.setenv("POWERTOOLS_LOGGER_LOG_EVENT", "true")
    return str(request.param)


@pytest.mark.parametrize(
    "scenario",
    [_dispatched, _replayed, _invalid, _unknown, _no_capacity, _delivery_failed, _bad_catalog_entry],
)
def test_token_and_input_never_appear_in_logs_or_errors(
    log_verbosity, scenario, deployment, dispatch_app, invoke, capsys, monkeypatch
):
    """Logs and metrics (enabled here as in AWS: EMF goes to stdout too) show the token's hash only."""
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    if log_verbosity == "debug":
        dispatch_app.logger.setLevel("DEBUG")
    event = event_for({**WORD_COUNT, "input": SECRET_INPUT})
    token = event["taskToken"]
    raised: BaseException | None = None
    try:
        scenario(deployment, dispatch_app, invoke, event)
    except Exception as exc:
        raised = exc
    captured = capsys.readouterr()
    logs = captured.out + captured.err
    records = [json.loads(line) for line in captured.out.splitlines() if line.startswith("{")]
    assert records, "no Powertools log line captured"
    assert any(record.get("tokenHash") == hashlib.sha256(token.encode()).hexdigest()[:12] for record in records)
    assert any("_aws" in record for record in records), "no metrics (EMF) line captured"
    assert leaked(logs, token, SECRET_INPUT) == []
    if raised is not None:
        errors = [str(raised), repr(raised), repr(raised.args), repr(raised.__cause__), repr(raised.__context__)]
        assert leaked(errors, token, SECRET_INPUT) == []
