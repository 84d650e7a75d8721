"""Validation of the job request (DESIGN-BRIEF.md, "Job request") against its job type.

Every refusal is `Job.InvalidRequest` (or `Job.UnknownType`) with a cause that names the
field and why. Nothing here touches AWS: the handler calls it before anything is recorded.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dispatch.catalog import JOB_TYPE_NAME, CatalogError, JobType, check_image
from dispatch.errors import InvalidRequest

# Step Functions' payload limit; the input must also fit the job table's 400 KB items.
MAX_INPUT_BYTES = 256 * 1024
FIELDS = ("jobType", "input", "image", "timeoutSeconds", "heartbeatSeconds")
# The state machine's defaults (statemachine/run_job.asl.json, ApplyDefaults).
DEFAULT_TIMEOUT_SECONDS = 3600
DEFAULT_HEARTBEAT_SECONDS = 300


@dataclass(frozen=True)
class ValidRequest:
    job_type: JobType
    input_json: str
    image: str
    timeout_seconds: int
    heartbeat_seconds: int


def _quoted(value: str) -> str:
    """A bounded, printable rendering of untrusted text for a cause."""
    return repr(value[:64]) + ("…" if len(value) > 64 else "")


def checked_shape(request: object) -> tuple[str, dict[str, Any]]:
    """The request as an object and its jobType, checked for shape only (the catalog decides
    whether the job type exists)."""
    if not isinstance(request, dict):
        raise InvalidRequest("request: must be a JSON object")
    unknown = [key for key in request if key not in FIELDS]
    if unknown:
        raise InvalidRequest(f"{_quoted(str(unknown[0]))}: unknown field (allowed: {', '.join(FIELDS)})")
    name = request.get("jobType")
    if name is None:
        raise InvalidRequest("jobType: required")
    if not isinstance(name, str) or not JOB_TYPE_NAME.fullmatch(name):
        raise InvalidRequest(f"jobType: must match {JOB_TYPE_NAME.pattern}")
    return name, request


def _seconds(request: dict[str, Any], key: str, default: int, maximum: int, job_type: str) -> int:
    value = request.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"{key}: must be an integer number of seconds")
    if value < 1:
        raise InvalidRequest(f"{key}: must be at least 1")
    if value > maximum:
        origin = "" if key in request else f" (the workflow's default {default})"
        raise InvalidRequest(f"{key}: {value}{origin} exceeds job type {job_type}'s maximum {maximum}")
    return value


def validate(request: dict[str, Any], job_type: JobType) -> ValidRequest:
    """Check the request's remaining fields against its job type."""
    payload = request.get("input", {})
    if not isinstance(payload, dict):
        raise InvalidRequest("input: must be a JSON object")
    input_json = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    try:
        size = len(input_json.encode("utf-8"))
    except UnicodeEncodeError:
        # JSON can escape half a surrogate pair ("\ud800"); such text has no UTF-8 form.
        raise InvalidRequest("input: must be valid Unicode (it holds a lone surrogate)") from None
    if size > MAX_INPUT_BYTES:
        raise InvalidRequest(f"input: {size} bytes exceeds the limit of {MAX_INPUT_BYTES}")
    image = job_type.image
    if "image" in request:
        try:
            image = check_image(request["image"], "image")
        except CatalogError as exc:
            raise InvalidRequest(str(exc)) from None
        if not job_type.allows_image(image):
            raise InvalidRequest(
                f"image: job type {job_type.name} does not allow {_quoted(image)} "
                "(overrides must be allowed and under an allowed registry prefix)"
            )
    timeout = _seconds(request, "timeoutSeconds", DEFAULT_TIMEOUT_SECONDS, job_type.max_timeout_seconds, job_type.name)
    heartbeat = _seconds(
        request, "heartbeatSeconds", DEFAULT_HEARTBEAT_SECONDS, job_type.max_heartbeat_seconds, job_type.name
    )
    if heartbeat > timeout:
        raise InvalidRequest(f"heartbeatSeconds: {heartbeat} exceeds timeoutSeconds {timeout}")
    return ValidRequest(job_type, input_json, image, timeout, heartbeat)


def validated(request: object, load_job_type: Callable[[str], JobType]) -> ValidRequest:
    """Shape check, catalog lookup, then the job type's own limits."""
    name, fields = checked_shape(request)
    return validate(fields, load_job_type(name))
