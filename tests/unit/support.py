"""Test data and oracles for the unit tests: the sample events, the design's job id formula,
the template's catalog entries. Nothing here imports the code under test."""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from local_stack import resources
from local_stack.template import ROOT, Stack

EVENTS = ROOT / "events"
DISPATCH_EVENTS = EVENTS / "dispatch"
REQUEST_EVENTS = EVENTS / "requests"
# events/dispatch/expected.json: file name -> null (dispatched) or {"error", "field"}.
EXPECTED = json.loads((DISPATCH_EVENTS / "expected.json").read_text(encoding="utf-8"))
GOOD_EVENTS = sorted(name for name, outcome in EXPECTED.items() if outcome is None)
BAD_EVENTS = sorted(name for name, outcome in EXPECTED.items() if outcome is not None)
CATALOG_PARAMETER = "AWS::SSM::Parameter"
# The state machine's defaults for a request without timeouts (ApplyDefaults in the ASL).
ASL_PATH = ROOT / "statemachine" / "run_job.asl.json"
_unique = itertools.count(1)


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def dispatch_event(name: str) -> dict[str, Any]:
    """A fresh copy of events/dispatch/<name>."""
    event: dict[str, Any] = load_json(DISPATCH_EVENTS / name)
    return event


def job_request(name: str) -> dict[str, Any]:
    """A fresh copy of events/requests/<name>."""
    request: dict[str, Any] = load_json(REQUEST_EVENTS / name)
    return request


SAMPLE_TOKEN: str = dispatch_event("word-count.json")["taskToken"]


def event_for(request: Any, **context: Any) -> dict[str, Any]:
    """A dispatch event as the RunJob Task sends it, for a new execution unless `context`
    says otherwise (taskToken, executionArn, stateName, stateEnteredTime, retryCount)."""
    event = dispatch_event("word-count.json")
    event["executionArn"] = event["executionArn"].rsplit(":", 1)[0] + f":test-{next(_unique):06d}"
    event["request"] = copy.deepcopy(request)
    event.update(context)
    return event


def expected_job_id(event: dict[str, Any]) -> str:
    """docs/design.md, "Job id and attempts"."""
    key = f"{event['executionArn']}|{event['stateName']}|{event['stateEnteredTime']}|{event['retryCount']}"
    return "job-" + hashlib.sha256(key.encode()).hexdigest()[:32]


def compact_json(value: Any) -> str:
    """How the job record stores `input` (docs/design.md, "Job record")."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def catalog_entries(stack: Stack) -> dict[str, dict[str, Any]]:
    """The template's seeded job types: name -> the entry's JSON, decoded."""
    entries = {}
    for logical_id, resource in stack.resources.items():
        if resource["Type"] == CATALOG_PARAMETER:
            props = stack.properties(logical_id)
            entries[props["Name"].rsplit("/", 1)[1]] = json.loads(props["Value"])
    return entries


def catalog_parameter(stack: Stack, job_type: str) -> str:
    """The SSM parameter name of a job type's catalog entry, under the function's CATALOG_PATH."""
    return resources.function_environment(stack, "DispatchFunction")["CATALOG_PATH"] + job_type


def repository_uri(stack: Stack) -> str:
    return stack.get_att("WorkerRepository", "RepositoryUri")


def job_record_attributes() -> dict[str, str]:
    """docs/design.md's "Job record" table: attribute -> DynamoDB type (S, N, L, M, BOOL)."""
    text = (ROOT / "docs" / "design.md").read_text(encoding="utf-8")
    section = text.split("## Job record", 1)[1].split("\n## ", 1)[0]
    attributes = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) < 2 or not cells[0].startswith("`"):
            continue
        for name in re.findall(r"`([A-Za-z0-9]+)`", cells[0]):
            attributes[name] = cells[1].split()[0]
    return attributes


def asl_defaults() -> dict[str, int]:
    """The timeouts the state machine's ApplyDefaults state gives a request without them."""
    definition = load_json(ASL_PATH)
    merge = definition["States"]["ApplyDefaults"]["Parameters"]["limits.$"]
    match = re.search(r"StringToJson\('(\{.*?\})'\)", merge)
    assert match, f"ApplyDefaults no longer holds its defaults as StringToJson('{{...}}'): {merge}"
    defaults: dict[str, int] = json.loads(match.group(1))
    return defaults


def strings_in(value: Any, keys: bool = True) -> list[str]:
    """Every string inside a decoded JSON-like structure (with its keys unless `keys` is false)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for key, item in value.items() for text in ([str(key)] if keys else []) + strings_in(item, keys)]
    if isinstance(value, list | tuple):
        return [text for item in value for text in strings_in(item, keys)]
    return []


def secret_fragments(token: str, job_input: Any) -> set[str]:
    """What must never show outside the job record: any 16 characters of the token, and the
    input (compact, or any of its string values of 8 characters or more)."""
    fragments = {token[i : i + 16] for i in range(len(token) - 15)} or {token}
    fragments |= {text for text in [compact_json(job_input), *strings_in(job_input, keys=False)] if len(text) >= 8}
    return fragments


def leaked(haystack: Any, token: str, job_input: Any) -> list[str]:
    """The secret fragments found in any string of `haystack` (a string or a structure)."""
    texts = strings_in(haystack)
    found = {fragment[:40] for fragment in secret_fragments(token, job_input) for text in texts if fragment in text}
    return sorted(found)


STACK = Stack()
REPOSITORY = repository_uri(STACK)  # 123456789012.dkr.ecr.us-east-1.amazonaws.com/run-job-worker
DIGEST = "sha256:" + hashlib.sha256(b"run-job worker image").hexdigest()

# Strings an attacker would try wherever a request takes text (ids name the pytest cases).
HOSTILE = {
    "shell-metacharacters": "x; rm -rf / && echo pwned | tee /tmp/x > /dev/null &",
    "command-substitution": "$(curl -s http://169.254.169.254/)",
    "variable-expansion": "${TASK_TOKEN}",
    "backticks": "`id`",
    "single-quote": "x'y",
    "double-quote": 'x"y',
    "newline": "x\nrm -rf /",
    "carriage-return": "x\r\ny",
    "docker-option": "--privileged",
    "docker-option-value": "-v=/:/host",
    "path-traversal": "../../../../etc/passwd",
    "very-long": "a" * 100_000,
    "unicode": "grüße-世界",
    "unicode-hyphen": "word\u2010count",
    "right-to-left": "word\u202ecount",
    "nul": "word-count\x00",
    "empty": "",
    "spaces": "  ",
}

# One catalog entry field made invalid at a time: (case id, changes, field the error names).
# A change of None deletes the field.
# Secret references a job type may hold (catalog "secrets"): a Secrets Manager ARN, an SSM name.
SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:run-job/secrets/db-password-AbCdEf"
SECRET_PARAMETER = "ssm:/run-job/secrets/api-key"
BAD_ENTRY_CHANGES: list[tuple[str, dict[str, Any], str]] = [
    ("image-missing", {"image": None}, "image"),
    ("image-not-string", {"image": 42}, "image"),
    ("image-option", {"image": "--privileged"}, "image"),
    ("image-shell", {"image": f"{REPOSITORY}:1;reboot"}, "image"),
    ("image-substitution", {"image": f"{REPOSITORY}:$(id)"}, "image"),
    ("image-uppercase-repo", {"image": REPOSITORY.upper() + ":1"}, "image"),
    ("image-space", {"image": f"{REPOSITORY}:1 --privileged"}, "image"),
    ("image-newline", {"image": f"{REPOSITORY}:1\n"}, "image"),
    ("image-short-digest", {"image": f"{REPOSITORY}@sha256:{'a' * 63}"}, "image"),
    ("image-uppercase-digest", {"image": f"{REPOSITORY}@sha256:{'A' * 64}"}, "image"),
    ("image-too-long", {"image": f"{REPOSITORY}/{'a' * 500}:1"}, "image"),
    ("image-tag-too-long", {"image": f"{REPOSITORY}:{'a' * 129}"}, "image"),
    ("command-not-list", {"command": "python3 -m callback_wrapper"}, "command"),
    ("command-too-many", {"command": ["x"] * 65}, "command"),
    ("command-not-strings", {"command": ["python3", 3]}, "command[1]"),
    ("command-nul", {"command": ["python3", "a\x00b"]}, "command[1]"),
    ("command-arg-too-long", {"command": ["x" * 4097]}, "command[0]"),
    ("cpu-bool", {"cpu": True}, "cpu"),
    ("cpu-string", {"cpu": "1"}, "cpu"),
    ("cpu-too-small", {"cpu": 0.09}, "cpu"),
    ("cpu-too-big", {"cpu": 64.5}, "cpu"),
    ("memory-too-small", {"memoryMiB": 15}, "memoryMiB"),
    ("memory-too-big", {"memoryMiB": 1_048_577}, "memoryMiB"),
    ("memory-float", {"memoryMiB": 512.0}, "memoryMiB"),
    ("memory-string", {"memoryMiB": "512"}, "memoryMiB"),
    ("pids-too-small", {"pidsLimit": 7}, "pidsLimit"),
    ("pids-too-big", {"pidsLimit": 65_537}, "pidsLimit"),
    ("max-timeout-missing", {"maxTimeoutSeconds": None}, "maxTimeoutSeconds"),
    ("max-timeout-zero", {"maxTimeoutSeconds": 0}, "maxTimeoutSeconds"),
    ("max-timeout-above-ssm", {"maxTimeoutSeconds": 172_501}, "maxTimeoutSeconds"),
    ("max-timeout-bool", {"maxTimeoutSeconds": True}, "maxTimeoutSeconds"),
    ("max-heartbeat-missing", {"maxHeartbeatSeconds": None}, "maxHeartbeatSeconds"),
    ("max-heartbeat-zero", {"maxHeartbeatSeconds": 0}, "maxHeartbeatSeconds"),
    ("max-heartbeat-above-timeout", {"maxTimeoutSeconds": 600, "maxHeartbeatSeconds": 601}, "maxHeartbeatSeconds"),
    ("stop-grace-negative", {"stopGraceSeconds": -1}, "stopGraceSeconds"),
    ("stop-grace-too-long", {"stopGraceSeconds": 3601}, "stopGraceSeconds"),
    ("read-only-string", {"readOnlyRootFs": "true"}, "readOnlyRootFs"),
    ("read-only-int", {"readOnlyRootFs": 1}, "readOnlyRootFs"),
    ("env-list", {"env": ["A=1"]}, "env"),
    ("env-too-many", {"env": {f"V{i}": "x" for i in range(65)}}, "env"),
    ("env-lowercase-name", {"env": {"path": "/x"}}, "env"),
    ("env-name-with-equals", {"env": {"A=B": "x"}}, "env"),
    ("env-reserved-token", {"env": {"TASK_TOKEN": "x"}}, "env"),
    ("env-reserved-job-id", {"env": {"JOB_ID": "x"}}, "env"),
    ("env-reserved-endpoint", {"env": {"AWS_ENDPOINT_URL": "http://evil"}}, "env"),
    ("env-reserved-secret", {"env": {"AWS_SECRET_ACCESS_KEY": "x"}}, "env"),
    ("env-value-not-string", {"env": {"LEVEL": 1}}, "env.LEVEL"),
    ("env-value-nul", {"env": {"LEVEL": "a\x00"}}, "env.LEVEL"),
    ("override-flag-string", {"allowImageOverride": "yes"}, "allowImageOverride"),
    ("prefixes-string", {"allowedRegistryPrefixes": REPOSITORY}, "allowedRegistryPrefixes"),
    ("prefix-invalid", {"allowedRegistryPrefixes": [REPOSITORY, "--privileged"]}, "allowedRegistryPrefixes[1]"),
    ("prefix-empty", {"allowedRegistryPrefixes": [""]}, "allowedRegistryPrefixes[0]"),
    ("unknown-field", {"privileged": True}, "'privileged'"),
    ("secrets-list", {"secrets": [SECRET_ARN]}, "secrets"),
    ("secrets-too-many", {"secrets": {f"S{i}": SECRET_ARN for i in range(33)}}, "secrets"),
    ("secrets-lowercase-name", {"secrets": {"db_password": SECRET_ARN}}, "secrets"),
    ("secrets-reserved-token", {"secrets": {"TASK_TOKEN": SECRET_ARN}}, "secrets"),
    ("secrets-reserved-docker", {"secrets": {"DOCKER_HOST": SECRET_ARN}}, "secrets"),
    ("secrets-also-in-env", {"env": {"DB_PASSWORD": "x"}, "secrets": {"DB_PASSWORD": SECRET_ARN}}, "secrets"),
    ("secrets-value-not-string", {"secrets": {"DB_PASSWORD": 1}}, "secrets.DB_PASSWORD"),
    ("secrets-plain-value", {"secrets": {"DB_PASSWORD": "hunter2"}}, "secrets.DB_PASSWORD"),
    (
        "secrets-other-service",
        {"secrets": {"DB_PASSWORD": SECRET_ARN.replace("secretsmanager", "s3")}},
        "secrets.DB_PASSWORD",
    ),
    ("secrets-arn-no-name", {"secrets": {"DB_PASSWORD": SECRET_ARN.rsplit(":", 1)[0] + ":"}}, "secrets.DB_PASSWORD"),
    ("secrets-arn-shell", {"secrets": {"DB_PASSWORD": SECRET_ARN + ";reboot"}}, "secrets.DB_PASSWORD"),
    ("secrets-arn-newline", {"secrets": {"DB_PASSWORD": SECRET_ARN + "\n"}}, "secrets.DB_PASSWORD"),
    ("secrets-ssm-relative", {"secrets": {"DB_PASSWORD": "ssm:run-job/db"}}, "secrets.DB_PASSWORD"),
    ("secrets-ssm-space", {"secrets": {"DB_PASSWORD": "ssm:/run-job/db password"}}, "secrets.DB_PASSWORD"),
    ("secrets-ssm-substitution", {"secrets": {"DB_PASSWORD": "ssm:/run-job/$(id)"}}, "secrets.DB_PASSWORD"),
    ("secrets-ssm-empty-segment", {"secrets": {"DB_PASSWORD": "ssm:/run-job//db"}}, "secrets.DB_PASSWORD"),
]


def changed_entry(entry: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A copy of a catalog entry with `changes` applied (None deletes a field)."""
    changed = copy.deepcopy(entry)
    for key, value in changes.items():
        if value is None:
            changed.pop(key, None)
        else:
            changed[key] = value
    return changed


def run_together(calls: list[Callable[[], Any]], timeout: float) -> list[Any]:
    """Run the calls in threads released at once (each join bounded by `timeout`); each one's
    result or what it raised, in order."""
    start = threading.Barrier(len(calls), timeout=timeout)
    outcomes: list[Any] = [None] * len(calls)

    def run(index: int) -> None:
        start.wait()
        try:
            outcomes[index] = calls[index]()
        except BaseException as exc:  # the outcome under test
            outcomes[index] = exc

    threads = [threading.Thread(target=run, args=(index,), daemon=True) for index in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
        assert not thread.is_alive(), "a dispatch hung"
    return outcomes


def raised(outcomes: list[Any]) -> list[BaseException]:
    """The exceptions among run_together's outcomes."""
    return [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
