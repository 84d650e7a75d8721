"""The job type catalog: the template's seeded entries, entries that must be refused, and
where an image override may come from."""

from __future__ import annotations

import dataclasses
import json

import pytest

from dispatch.catalog import CatalogError, JobType, parse_job_type

from .support import (
    BAD_ENTRY_CHANGES,
    DIGEST,
    HOSTILE,
    REPOSITORY,
    SECRET_ARN,
    SECRET_PARAMETER,
    STACK,
    catalog_entries,
    changed_entry,
)

SEEDED = catalog_entries(STACK)
WORD_COUNT_ENTRY = SEEDED["word-count"]


def test_the_template_seeds_both_example_job_types():
    assert set(SEEDED) >= {"word-count", "checksum"}


@pytest.mark.parametrize("name", sorted(SEEDED))
def test_seeded_entry_parses_to_what_it_says(name):
    entry = SEEDED[name]
    job_type = parse_job_type(name, json.dumps(entry))
    assert job_type == parse_job_type(name, entry)  # JSON text and decoded object alike
    assert job_type.name == name
    assert job_type.image == entry["image"]
    assert job_type.image.startswith(REPOSITORY + ":")
    assert job_type.command == entry["command"]
    assert job_type.cpu == entry["cpu"]
    assert job_type.memory_mib == entry["memoryMiB"]
    assert job_type.pids_limit == entry["pidsLimit"]
    assert job_type.max_timeout_seconds == entry["maxTimeoutSeconds"]
    assert job_type.max_heartbeat_seconds == entry["maxHeartbeatSeconds"]
    assert job_type.stop_grace_seconds == entry["stopGraceSeconds"]
    assert job_type.read_only_root_fs is entry["readOnlyRootFs"]
    assert job_type.env == entry["env"]
    assert job_type.allow_image_override is entry["allowImageOverride"]
    assert job_type.allowed_registry_prefixes == entry["allowedRegistryPrefixes"]


def test_only_checksum_admits_overrides_and_only_from_the_stacks_repository():
    assert not parse_job_type("word-count", WORD_COUNT_ENTRY).allow_image_override
    checksum = parse_job_type("checksum", SEEDED["checksum"])
    assert checksum.allow_image_override
    assert checksum.allowed_registry_prefixes == [REPOSITORY]


@pytest.mark.parametrize(
    ("changes", "field"), [case[1:] for case in BAD_ENTRY_CHANGES], ids=[case[0] for case in BAD_ENTRY_CHANGES]
)
def test_invalid_entry_is_refused_naming_the_field(changes, field):
    entry = changed_entry(WORD_COUNT_ENTRY, changes)
    with pytest.raises(CatalogError) as caught:
        parse_job_type("word-count", json.dumps(entry))
    message = str(caught.value)
    assert message.startswith(field + ":") or message.startswith(field + "."), message
    assert message.isprintable()
    assert len(message) <= 512


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ("", "entry"),
        ("{", "entry"),
        ("[]", "entry"),
        ('"word-count"', "entry"),
        ("null", "entry"),
        ("42", "entry"),
        (json.dumps({**WORD_COUNT_ENTRY, "cpu": "NaN"}).replace('"NaN"', "NaN"), "cpu"),
        (json.dumps({**WORD_COUNT_ENTRY, "cpu": "Infinity"}).replace('"Infinity"', "Infinity"), "cpu"),
    ],
    ids=["empty", "truncated", "array", "string", "null", "number", "cpu-nan", "cpu-infinity"],
)
def test_entry_that_is_not_a_json_object_of_fields_is_refused(raw, field):
    with pytest.raises(CatalogError, match=rf"^{field}:"):
        parse_job_type("word-count", raw)


@pytest.mark.parametrize(
    "name", ["", "Word-Count", "-word", "word_count", "a" * 64, "word count", "../word-count", "wörd", "x\n"]
)
def test_invalid_job_type_name_is_refused(name):
    with pytest.raises(CatalogError, match=r"^name:"):
        parse_job_type(name, WORD_COUNT_ENTRY)


@pytest.mark.parametrize(
    "changes",
    [
        {"cpu": 0.1},
        {"cpu": 64},
        {"memoryMiB": 16},
        {"memoryMiB": 1_048_576},
        {"pidsLimit": 8},
        {"pidsLimit": 65_536},
        {"maxTimeoutSeconds": 172_800 - 300, "maxHeartbeatSeconds": 172_800 - 300},
        {"maxTimeoutSeconds": 1, "maxHeartbeatSeconds": 1},
        {"stopGraceSeconds": 0},
        {"stopGraceSeconds": 3600},
        {"command": []},
        {"command": ["x"] * 64},
        {"command": ["x" * 4096]},
        {"env": {f"V{i}": "x" for i in range(64)}},
        {"env": {"_": "", "A1": "x" * 4096}},
        {"image": f"{REPOSITORY}@{DIGEST}"},
        {"image": f"{REPOSITORY}:{'a' * 128}"},
        {"image": "localhost:5000/run-job-worker:1"},
        {"image": f"{REPOSITORY}/{'a' * (511 - len(REPOSITORY))}"},
        {"allowImageOverride": True, "allowedRegistryPrefixes": [REPOSITORY, "registry.example.com"]},
        {"secrets": {"DB_PASSWORD": SECRET_ARN, "API_KEY": SECRET_PARAMETER}},
        {"secrets": {f"S{i}": f"{SECRET_PARAMETER}-{i}" for i in range(32)}},
        {"secrets": {"DB_PASSWORD": "arn:aws-cn:secretsmanager:cn-north-1:123456789012:secret:a/b_c+d=e.f@g-h"}},
        {"secrets": {"API_KEY": "ssm:/" + "/".join(["a" * 200] * 5)}},
    ],
    ids=lambda changes: "+".join(f"{key}" for key in changes),
)
def test_entries_at_the_limits_are_accepted(changes):
    job_type = parse_job_type("word-count", changed_entry(WORD_COUNT_ENTRY, changes))
    fields = {field.name: getattr(job_type, field.name) for field in dataclasses.fields(job_type)}
    snake = {
        "cpu": "cpu",
        "memoryMiB": "memory_mib",
        "pidsLimit": "pids_limit",
        "maxTimeoutSeconds": "max_timeout_seconds",
        "maxHeartbeatSeconds": "max_heartbeat_seconds",
        "stopGraceSeconds": "stop_grace_seconds",
        "command": "command",
        "env": "env",
        "image": "image",
        "allowImageOverride": "allow_image_override",
        "allowedRegistryPrefixes": "allowed_registry_prefixes",
        "secrets": "secrets",
    }
    for key, value in changes.items():
        assert fields[snake[key]] == value, key


def test_minimal_entry_gets_safe_defaults():
    minimal = {key: WORD_COUNT_ENTRY[key] for key in ("image", "maxTimeoutSeconds", "maxHeartbeatSeconds")}
    job_type = parse_job_type("minimal", minimal)
    assert job_type.allow_image_override is False
    assert job_type.allowed_registry_prefixes == []
    assert job_type.env == {}
    assert job_type.secrets == {}
    assert job_type.command == []
    assert not job_type.allows_image(job_type.image + "-2")


def overridable(*prefixes: str, allowed: bool = True) -> JobType:
    base = parse_job_type("checksum", SEEDED["checksum"])
    return dataclasses.replace(base, allow_image_override=allowed, allowed_registry_prefixes=list(prefixes))


@pytest.mark.parametrize(
    ("prefixes", "image", "allowed"),
    [
        ([REPOSITORY], f"{REPOSITORY}:checksum-2", True),
        ([REPOSITORY], f"{REPOSITORY}@{DIGEST}", True),
        ([REPOSITORY], f"{REPOSITORY}:checksum-2@{DIGEST}", True),
        ([REPOSITORY], f"{REPOSITORY}/nested:1", True),
        ([REPOSITORY], REPOSITORY, False),  # a tag or digest is required
        ([REPOSITORY], f"{REPOSITORY}-evil:1", False),
        ([REPOSITORY], f"{REPOSITORY}evil:1", False),
        ([REPOSITORY], f"{REPOSITORY}_evil:1", False),
        ([REPOSITORY], f"{REPOSITORY}.evil:1", False),
        ([REPOSITORY], REPOSITORY.rsplit("/", 1)[0] + "/other:1", False),
        ([REPOSITORY], "x" + REPOSITORY + ":1", False),
        ([REPOSITORY], "evil.example.com/" + REPOSITORY + ":1", False),
        (["registry.example.com"], "registry.example.com/team/job:1", True),
        (["registry.example.com"], "registry.example.com.evil.io/team/job:1", False),
        (["registry.example.com"], "registry.example.community/job:1", False),
        (["registry.example.com/team"], "registry.example.com/team/job:1", True),
        (["registry.example.com/team"], "registry.example.com/teammate/job:1", False),
        (["registry.example.com/team/"], "registry.example.com/team/job:1", True),
        (["registry.example.com/team/"], "registry.example.com/teamjob:1", False),
        (["a.example.com/x", "b.example.com/y"], "b.example.com/y:1", True),
        (["a.example.com/x", "b.example.com/y"], "b.example.com/x:1", False),
        ([], f"{REPOSITORY}:checksum-2", False),
    ],
)
def test_allows_image_only_under_a_prefix_at_a_path_boundary(prefixes, image, allowed):
    assert overridable(*prefixes).allows_image(image) is allowed


def test_allows_no_image_when_overrides_are_off():
    job_type = overridable(REPOSITORY, allowed=False)
    assert not job_type.allows_image(f"{REPOSITORY}:checksum-2")


# Every catalog field with each hostile string in it: slot -> (how the value goes in, the field
# the refusal must name). Only a command element and an env value are free text (handed to the
# container as they are); everything else must refuse the string.
HOSTILE_SLOTS = {
    "name": (None, "name"),
    "image": (lambda value: {"image": value}, "image"),
    "command-element": (lambda value: {"command": ["--job", value]}, "command[1]"),
    "cpu": (lambda value: {"cpu": value}, "cpu"),
    "memoryMiB": (lambda value: {"memoryMiB": value}, "memoryMiB"),
    "pidsLimit": (lambda value: {"pidsLimit": value}, "pidsLimit"),
    "maxTimeoutSeconds": (lambda value: {"maxTimeoutSeconds": value}, "maxTimeoutSeconds"),
    "maxHeartbeatSeconds": (lambda value: {"maxHeartbeatSeconds": value}, "maxHeartbeatSeconds"),
    "stopGraceSeconds": (lambda value: {"stopGraceSeconds": value}, "stopGraceSeconds"),
    "readOnlyRootFs": (lambda value: {"readOnlyRootFs": value}, "readOnlyRootFs"),
    "env-name": (lambda value: {"env": {value: "x"}}, "env"),
    "env-value": (lambda value: {"env": {"VALUE": value}}, "env.VALUE"),
    "allowImageOverride": (lambda value: {"allowImageOverride": value}, "allowImageOverride"),
    "allowedRegistryPrefixes": (lambda value: {"allowedRegistryPrefixes": [value]}, "allowedRegistryPrefixes[0]"),
    "unknown-field": (lambda value: {value: "x"}, "unknown"),
}
FREE_TEXT = {
    "command-element": lambda job_type: job_type.command[1],
    "env-value": lambda job_type: job_type.env["VALUE"],
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
@pytest.mark.parametrize("slot", sorted(HOSTILE_SLOTS))
def test_hostile_string_in_any_catalog_field_is_refused_or_kept_verbatim(slot, case):
    value = HOSTILE[case]
    change, field = HOSTILE_SLOTS[slot]
    try:
        if change is None:
            job_type = parse_job_type(value, WORD_COUNT_ENTRY)
        else:
            job_type = parse_job_type("word-count", json.dumps(changed_entry(WORD_COUNT_ENTRY, change(value))))
    except CatalogError as exc:
        message = str(exc)
        expected = repr(value[:64]) if field == "unknown" else field
        assert message.startswith(expected + ":"), message
        assert message.isprintable()
        assert len(message) <= 512
        # Free text is refused only when no process could receive it: a NUL, or over 4 KiB.
        assert slot not in FREE_TEXT or "\x00" in value or len(value) > 4096, message
    else:
        assert slot in FREE_TEXT, f"{slot} accepted {value[:40]!r}"
        assert FREE_TEXT[slot](job_type) == value
