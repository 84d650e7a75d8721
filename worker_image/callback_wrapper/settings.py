"""The container environment the wrapper reads (set by the host side, docs/design.md)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from .outcome import JobContext

DEFAULT_INPUT_PATH = "/job/input.json"
# Shorter than `docker stop`'s default 10 s, so the job gets its SIGTERM, its grace and its
# SIGKILL from the wrapper before docker kills the wrapper itself.
DEFAULT_STOP_GRACE_SECONDS = 5
# Plain characters only: the id goes into logs and causes unescaped (see outcome.build_cause).
_JOB_ID = re.compile(r"[A-Za-z0-9_.-]{1,128}")
_SECONDS = re.compile(r"[0-9]{1,9}")
# S3's bucket naming rules (3 to 63 chars) and the run-container document's LogGroup pattern:
# the stack sets both, so a value that breaks them is a deployment error, refused up front.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_LOG_GROUP = re.compile(r"[A-Za-z0-9_./#-]{1,512}")


class ConfigError(Exception):
    """The environment is missing or has a malformed variable (never includes its value
    for TASK_TOKEN)."""


@dataclass(frozen=True)
class Settings:
    task_token: str = field(repr=False)  # secret: kept out of repr() and so of any traceback
    job_id: str
    input_path: str
    heartbeat_seconds: int  # 0: the task has no HeartbeatSeconds, send none
    stop_grace_seconds: int
    region: str
    endpoint_url: str | None
    output_bucket: str | None  # where outputs over Step Functions' limit go; None: they fail
    log_group: str | None  # the job's CloudWatch log group, when the host side logs there

    @property
    def context(self) -> JobContext:
        return JobContext(self.job_id, self.output_bucket, self.log_group)

    @property
    def heartbeat_interval(self) -> int | None:
        """A third of the heartbeat timeout, so two heartbeats can be lost before it fires."""
        if self.heartbeat_seconds == 0:
            return None
        return max(1, self.heartbeat_seconds // 3)


def settings_from_env(env: Mapping[str, str]) -> Settings:
    token = env.get("TASK_TOKEN", "")
    if not token:
        raise ConfigError("TASK_TOKEN is not set")
    job_id = env.get("JOB_ID", "")
    if not _JOB_ID.fullmatch(job_id):
        raise ConfigError(f"JOB_ID must match {_JOB_ID.pattern}, got {job_id!r}")
    # Old botocore (Debian bookworm's 1.29) reads neither AWS_REGION nor AWS_ENDPOINT_URL
    # itself, so both are read here and passed to the client explicitly.
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if not region:
        raise ConfigError("AWS_REGION is not set")
    return Settings(
        task_token=token,
        job_id=job_id,
        input_path=env.get("JOB_INPUT_PATH") or DEFAULT_INPUT_PATH,
        heartbeat_seconds=_seconds(env, "HEARTBEAT_SECONDS", 0),
        stop_grace_seconds=_seconds(env, "STOP_GRACE_SECONDS", DEFAULT_STOP_GRACE_SECONDS),
        region=region,
        endpoint_url=env.get("AWS_ENDPOINT_URL") or None,
        output_bucket=_optional(env, "OUTPUT_BUCKET", _BUCKET),
        log_group=_optional(env, "JOB_LOG_GROUP", _LOG_GROUP),
    )


def _optional(env: Mapping[str, str], name: str, pattern: re.Pattern[str]) -> str | None:
    raw = env.get(name, "")
    if not raw:
        return None
    if not pattern.fullmatch(raw):
        raise ConfigError(f"{name} must match {pattern.pattern}, got {raw!r}")
    return raw


def _seconds(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "")
    if not raw:
        return default
    if not _SECONDS.fullmatch(raw):
        raise ConfigError(f"{name} must be a whole number of seconds, got {raw!r}")
    return int(raw)
