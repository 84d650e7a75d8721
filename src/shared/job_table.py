"""Job record updates shared by the dispatch function and the reaper (docs/design.md)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

OPEN_STATUSES = ("PENDING", "DISPATCHED")
FINAL_STATUSES = ("SUCCEEDED", "FAILED", "CANCELLED")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def token_hash(token: str) -> str:
    """What logs show instead of the token."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def conditional_write(write: Callable[[], object]) -> bool:
    """Run one conditional DynamoDB write; False when its condition did not hold (another
    writer got there first), any other error raised."""
    try:
        write()
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
            return False
        raise
    return True


def set_status(dynamodb: Any, table: str, job_id: str, status: str, extra: dict[str, str] | None = None) -> bool:
    """Move a job to `status` (with string attributes) unless it already reached a final
    status: the first final status wins. Returns whether the record changed."""
    values = {"status": status, "updatedAt": now_iso(), **(extra or {})}
    names = {f"#a{i}": key for i, key in enumerate(values)}
    attribute_values: dict[str, Any] = {f":v{i}": {"S": value} for i, value in enumerate(values.values())}
    attribute_values.update({f":open{i}": {"S": open_status} for i, open_status in enumerate(OPEN_STATUSES)})
    return conditional_write(
        lambda: dynamodb.update_item(
            TableName=table,
            Key={"jobId": {"S": job_id}},
            UpdateExpression="SET " + ", ".join(f"#a{i} = :v{i}" for i in range(len(values))),
            ConditionExpression="attribute_exists(jobId) AND #a0 IN ("
            + ", ".join(f":open{i}" for i in range(len(OPEN_STATUSES)))
            + ")",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=attribute_values,
        )
    )
