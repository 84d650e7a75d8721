"""Properties of the request checks over arbitrary JSON: `dispatch.request.validated` only
ever returns a request within its job type's limits or raises a named JobError, and a
refused request never reaches SendCommand."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dispatch.catalog import JobType, parse_job_type
from dispatch.errors import JobError, UnknownType
from dispatch.jobs import MAX_SLOTS, SLOTS_TAG
from dispatch.request import ValidRequest, validated

from .support import DIGEST, HOSTILE, REPOSITORY, STACK, catalog_entries, event_for

JOB_TYPES = {name: parse_job_type(name, entry) for name, entry in catalog_entries(STACK).items()}
MAX_INPUT_BYTES = 256 * 1024


def from_the_catalog(name: str) -> JobType:
    """The template's seeded catalog, refusing other names as the function's loader does."""
    if name not in JOB_TYPES:
        raise UnknownType(f"jobType: {name!r} is not in the job type catalog")
    return JOB_TYPES[name]


# Text as JSON can carry it: any code point, lone surrogates included ("\ud800" is valid JSON),
# with the awkward ones drawn often enough to matter.
AWKWARD = ["\ud800", "\udfff", "\x00", '"', "\\", "\n", "\u202e", "\u2028", "é", "世", "🎉", "$", "`", "'"]
any_text = st.text(st.characters(exclude_categories=()) | st.sampled_from(AWKWARD), max_size=40)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | any_text
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(any_text, children, max_size=4),
    max_leaves=12,
)
seconds = st.integers(min_value=-10, max_value=200_000) | json_values
images = (
    st.sampled_from(
        [
            f"{REPOSITORY}:checksum-2",
            f"{REPOSITORY}@{DIGEST}",
            f"{REPOSITORY}-evil:1",
            "evil.example.com/run-job-worker:1",
            *HOSTILE.values(),
        ]
    )
    | any_text
    | json_values
)
known_fields = st.fixed_dictionaries(
    {},
    optional={
        "jobType": st.sampled_from([*JOB_TYPES, "thumbnail"]) | any_text | json_values,
        "input": st.dictionaries(any_text, json_values, max_size=5) | json_values,
        "image": images,
        "timeoutSeconds": seconds,
        "heartbeatSeconds": seconds,
    },
)
requests = (
    known_fields
    | st.builds(lambda known, extra: {**extra, **known}, known_fields, st.dictionaries(any_text, json_values))
    | json_values
)
# Mostly well-formed requests, so that the examples also reach the later checks.
plausible = st.fixed_dictionaries(
    {"jobType": st.sampled_from(sorted(JOB_TYPES))},
    optional={
        "input": st.dictionaries(any_text, json_values, max_size=5),
        "image": images,
        "timeoutSeconds": st.integers(min_value=-1, max_value=100_000),
        "heartbeatSeconds": st.integers(min_value=-1, max_value=2_000),
    },
)


def check_valid(request: dict[str, Any], valid: ValidRequest) -> None:
    """What a request that passed must satisfy."""
    job_type = JOB_TYPES[request["jobType"]]
    assert valid.job_type == job_type
    assert set(request) <= {"jobType", "input", "image", "timeoutSeconds", "heartbeatSeconds"}
    assert json.loads(valid.input_json) == request.get("input", {})
    assert len(valid.input_json.encode("utf-8")) <= MAX_INPUT_BYTES
    assert 1 <= valid.heartbeat_seconds <= valid.timeout_seconds <= job_type.max_timeout_seconds
    assert valid.heartbeat_seconds <= job_type.max_heartbeat_seconds
    if "image" in request:
        assert valid.image == request["image"]
        assert job_type.allow_image_override
        assert any(valid.image.startswith(prefix) for prefix in job_type.allowed_registry_prefixes)
    else:
        assert valid.image == job_type.image


# A cause starts with the field it is about: a request field, or an unknown key, quoted.
CAUSE = re.compile(r"^(request|jobType|input|image|timeoutSeconds|heartbeatSeconds|(['\"]).*\2…?): ", re.DOTALL)


def check_refusal(refusal: JobError) -> None:
    assert type(refusal).__name__ in {"Job.InvalidRequest", "Job.UnknownType"}
    assert CAUSE.match(str(refusal)), str(refusal)
    assert str(refusal).isprintable()


@settings(max_examples=400, deadline=None, database=None)
@given(st.one_of(requests, plausible))
def test_validated_returns_a_request_within_limits_or_raises_a_job_error(request: Any) -> None:
    refusal: JobError | None = None
    try:
        valid = validated(request, from_the_catalog)
    except JobError as exc:  # anything else fails the test
        refusal = exc
    if refusal is None:
        check_valid(request, valid)
    else:
        check_refusal(refusal)


@pytest.mark.parametrize("name", sorted(JOB_TYPES))
def test_the_smallest_request_is_valid(name):
    valid = validated({"jobType": name}, from_the_catalog)
    assert valid.input_json == "{}"
    assert valid.image == JOB_TYPES[name].image


@pytest.fixture
def roomy_pool(deployment: Any) -> None:
    """A slot for every example's job: the examples share one pool, and accepted jobs keep theirs."""
    deployment.ec2.create_tags(Resources=deployment.instance_ids, Tags=[{"Key": SLOTS_TAG, "Value": str(MAX_SLOTS)}])


@settings(
    max_examples=60,
    deadline=None,
    database=None,
    # The moto fixture is shared by the examples on purpose: each example checks what it added.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(request=st.one_of(requests, plausible))
def test_refused_requests_never_reach_send_command(request, invoke, commands, jobs, roomy_pool):
    sent_before, recorded_before = len(commands()), len(jobs())
    refusal: JobError | None = None
    try:
        invoke(event_for(request))
    except JobError as exc:  # anything else fails the test
        refusal = exc
    added = (len(commands()) - sent_before, len(jobs()) - recorded_before)
    if refusal is None:
        assert added == (1, 1)
    else:
        check_refusal(refusal)
        assert added == (0, 0)
