"""The job type catalog: one SSM parameter per job type, holding a JSON object.

Parsing and validation live here so the dispatch function and the catalog CLI refuse the
same entries with the same messages.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

JOB_TYPE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
# A container image reference: registry/repository[:tag] or [@sha256:digest]. No leading dash,
# no whitespace, nothing a shell or docker's option parser could read as anything else.
IMAGE_REF = re.compile(
    r"^[a-z0-9][a-z0-9._-]*(:[0-9]{1,5})?(/[a-z0-9][a-z0-9._-]*)*"
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[0-9a-f]{64})?$"
)
ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]{0,127}$")
# A secret by reference: a Secrets Manager secret's ARN, or "ssm:" and a parameter's full name
# (a SecureString). The host side resolves it when the job starts; the value is never recorded.
SECRET_REF = re.compile(
    r"^(arn:aws[a-z-]*:secretsmanager:[a-z]{2}(-[a-z]+)+-[0-9]:[0-9]{12}:secret:[A-Za-z0-9/_+=.@-]{1,512}"
    r"|ssm:(/[A-Za-z0-9_.-]{1,1011})+)$"
)
MAX_SECRETS = 32
# The host side sets these; a job type cannot override them.
RESERVED_ENV = frozenset(
    {
        "TASK_TOKEN",
        "JOB_ID",
        "JOB_INPUT_PATH",
        "JOB_OUTPUT_DIR",
        "HEARTBEAT_SECONDS",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "OUTPUT_BUCKET",
        "JOB_LOG_GROUP",
    }
)
# The host side exports job variables to the docker CLI itself: names that steer it are refused.
RESERVED_PREFIXES = ("DOCKER_", "LD_")
# SSM's executionTimeout tops out at 48 h; the host side gets the job's timeout plus a margin.
SSM_MAX_EXECUTION_TIMEOUT = 172_800
HOST_MARGIN_SECONDS = 300
MAX_TIMEOUT_SECONDS = SSM_MAX_EXECUTION_TIMEOUT - HOST_MARGIN_SECONDS
MAX_STRING = 4096


class CatalogError(ValueError):
    """A catalog entry is not valid; the message names the field and why."""


@dataclass(frozen=True)
class JobType:
    name: str
    image: str
    command: list[str]
    cpu: float
    memory_mib: int
    pids_limit: int
    max_timeout_seconds: int
    max_heartbeat_seconds: int
    stop_grace_seconds: int
    read_only_root_fs: bool
    env: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    allow_image_override: bool = False
    allowed_registry_prefixes: list[str] = field(default_factory=list)

    def allows_image(self, image: str) -> bool:
        """An override must sit under an allowed prefix, at a path boundary."""
        return self.allow_image_override and any(
            image.startswith(prefix.rstrip("/:@") + sep)
            for prefix in self.allowed_registry_prefixes
            for sep in ("/", ":", "@")
        )


def check_image(image: object, where: str) -> str:
    if not isinstance(image, str) or not IMAGE_REF.fullmatch(image) or len(image) > 512:
        raise CatalogError(f"{where}: must be an image reference like repo/name:tag or repo/name@sha256:<64 hex>")
    return image


def _text(value: object, where: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_STRING or "\x00" in value:
        raise CatalogError(f"{where}: must be a string of at most {MAX_STRING} characters without NUL")
    return value


def _integer(value: object, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise CatalogError(f"{where}: must be an integer from {low} to {high}")
    return value


def _variable_names(value: object, where: str, limit: int) -> dict[str, Any]:
    """An object of environment variables the job type may set (names checked, values not)."""
    if not isinstance(value, dict) or len(value) > limit:
        raise CatalogError(f"{where}: must be an object of at most {limit} variables")
    for name in value:
        if not ENV_NAME.fullmatch(name) or name in RESERVED_ENV or name.startswith(RESERVED_PREFIXES):
            raise CatalogError(f"{where}: {name[:64]!r} is not an allowed variable name")
    return value


def _secret_ref(value: object, where: str) -> str:
    if not isinstance(value, str) or len(value) > 2048 or not SECRET_REF.fullmatch(value):
        raise CatalogError(
            f"{where}: must be a Secrets Manager secret ARN (arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME) "
            "or ssm: and a parameter name (ssm:/path/name)"
        )
    return value


def _flag(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise CatalogError(f"{where}: must be true or false")
    return value


_FIELDS = {
    "image",
    "command",
    "cpu",
    "memoryMiB",
    "pidsLimit",
    "maxTimeoutSeconds",
    "maxHeartbeatSeconds",
    "stopGraceSeconds",
    "readOnlyRootFs",
    "env",
    "secrets",
    "allowImageOverride",
    "allowedRegistryPrefixes",
}


def parse_job_type(name: str, raw: str | dict[str, Any]) -> JobType:
    """Validate one catalog entry (JSON text or an already decoded object)."""
    if not JOB_TYPE_NAME.fullmatch(name):
        raise CatalogError(f"name: must match {JOB_TYPE_NAME.pattern}")
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise CatalogError(f"entry: not JSON ({exc.msg})") from None
    if not isinstance(raw, dict):
        raise CatalogError("entry: must be a JSON object")
    unknown = sorted(set(raw) - _FIELDS)
    if unknown:
        raise CatalogError(f"{unknown[0][:64]!r}: unknown field")
    command = raw.get("command", [])
    if not isinstance(command, list) or len(command) > 64:
        raise CatalogError("command: must be a list of at most 64 strings")
    cpu = raw.get("cpu", 1)
    if isinstance(cpu, bool) or not isinstance(cpu, (int, float)) or not 0.1 <= cpu <= 64:
        raise CatalogError("cpu: must be a number of vCPUs from 0.1 to 64")
    env = _variable_names(raw.get("env", {}), "env", 64)
    secrets = _variable_names(raw.get("secrets", {}), "secrets", MAX_SECRETS)
    both = sorted(set(env) & set(secrets))
    if both:
        raise CatalogError(f"secrets: {both[0]!r} is also in env (a variable comes from one or the other)")
    prefixes = raw.get("allowedRegistryPrefixes", [])
    if not isinstance(prefixes, list):
        raise CatalogError("allowedRegistryPrefixes: must be a list of image prefixes")
    max_timeout = _integer(raw.get("maxTimeoutSeconds"), "maxTimeoutSeconds", 1, MAX_TIMEOUT_SECONDS)
    return JobType(
        name=name,
        image=check_image(raw.get("image"), "image"),
        command=[_text(arg, f"command[{i}]") for i, arg in enumerate(command)],
        cpu=float(cpu),
        memory_mib=_integer(raw.get("memoryMiB", 512), "memoryMiB", 16, 1_048_576),
        pids_limit=_integer(raw.get("pidsLimit", 256), "pidsLimit", 8, 65_536),
        max_timeout_seconds=max_timeout,
        max_heartbeat_seconds=_integer(raw.get("maxHeartbeatSeconds"), "maxHeartbeatSeconds", 1, max_timeout),
        stop_grace_seconds=_integer(raw.get("stopGraceSeconds", 30), "stopGraceSeconds", 0, 3600),
        read_only_root_fs=_flag(raw.get("readOnlyRootFs", False), "readOnlyRootFs"),
        env={key: _text(value, f"env.{key}") for key, value in env.items()},
        secrets={key: _secret_ref(value, f"secrets.{key}") for key, value in secrets.items()},
        allow_image_override=_flag(raw.get("allowImageOverride", False), "allowImageOverride"),
        allowed_registry_prefixes=[
            check_image(prefix, f"allowedRegistryPrefixes[{i}]") for i, prefix in enumerate(prefixes)
        ],
    )
