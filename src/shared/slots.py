"""The slot table: which jobs hold a slot on which worker instance (docs/design.md, "Slots").

One item per instance: `instanceId`, `jobs` (a string set of job ids) and, per job, `at:<jobId>`
(when it took the slot, so the sweep can tell a dispatch in progress from one that died). A take
is one conditional UpdateItem, so two dispatches racing for an instance's last slot cannot both
win; a job id already in the set takes nothing more (a duplicate dispatch). Releases remove the
job id and can run any number of times, from any path that sees a job end.
"""

from __future__ import annotations

from typing import Any

from shared.job_table import conditional_write, now_iso

TAKEN_PREFIX = "at:"
# BatchGetItem reads at most this many items per call.
BATCH_GET_LIMIT = 100
# Unprocessed keys (throttling inside DynamoDB) are asked for again this many times at most.
BATCH_GET_ROUNDS = 5


def _key(instance_id: str) -> dict[str, Any]:
    return {"instanceId": {"S": instance_id}}


def take(dynamodb: Any, table: str, instance_id: str, job_id: str, slots: int) -> bool:
    """Take a slot on the instance for the job; False when its slots are all taken by others."""
    return conditional_write(
        lambda: dynamodb.update_item(
            TableName=table,
            Key=_key(instance_id),
            UpdateExpression="ADD jobs :job SET #at = :now",
            ConditionExpression="attribute_not_exists(jobs) OR size(jobs) < :slots OR contains(jobs, :id)",
            ExpressionAttributeNames={"#at": TAKEN_PREFIX + job_id},
            ExpressionAttributeValues={
                ":job": {"SS": [job_id]},
                ":id": {"S": job_id},
                ":slots": {"N": str(slots)},
                ":now": {"S": now_iso()},
            },
        )
    )


def release(dynamodb: Any, table: str, instance_id: str, job_id: str) -> bool:
    """Give the job's slot back; False when it held none there (released already)."""
    return conditional_write(
        lambda: dynamodb.update_item(
            TableName=table,
            Key=_key(instance_id),
            UpdateExpression="DELETE jobs :job REMOVE #at",
            ConditionExpression="contains(jobs, :id)",
            ExpressionAttributeNames={"#at": TAKEN_PREFIX + job_id},
            ExpressionAttributeValues={":job": {"SS": [job_id]}, ":id": {"S": job_id}},
        )
    )


def release_instance(dynamodb: Any, table: str, instance_id: str) -> list[str]:
    """Every slot of an instance that went away (its containers went with it); the jobs that held one."""
    old = dynamodb.delete_item(TableName=table, Key=_key(instance_id), ReturnValues="ALL_OLD").get("Attributes", {})
    return sorted(old.get("jobs", {}).get("SS", []))


def holders_of(item: dict[str, Any]) -> dict[str, str]:
    """job id -> when it took its slot ("" if unknown), from one slot table item."""
    return {job_id: item.get(TAKEN_PREFIX + job_id, {}).get("S", "") for job_id in item.get("jobs", {}).get("SS", [])}


def holders(dynamodb: Any, table: str, instance_ids: list[str]) -> dict[str, dict[str, str]]:
    """instance id -> its slot holders (job id -> taken at), for the given instances (consistent).
    An instance whose item stayed unprocessed is left out: its load is unknown."""
    found: dict[str, dict[str, str]] = {instance_id: {} for instance_id in instance_ids}
    for start in range(0, len(instance_ids), BATCH_GET_LIMIT):
        keys = [_key(instance_id) for instance_id in instance_ids[start : start + BATCH_GET_LIMIT]]
        request: dict[str, Any] = {table: {"Keys": keys, "ConsistentRead": True}}
        for _ in range(BATCH_GET_ROUNDS):
            answer = dynamodb.batch_get_item(RequestItems=request)
            for item in answer["Responses"].get(table, []):
                found[item["instanceId"]["S"]] = holders_of(item)
            request = answer.get("UnprocessedKeys") or {}
            if not request:
                break
        for key in request.get(table, {}).get("Keys", []):
            del found[key["instanceId"]["S"]]
    return found


def all_holders(dynamodb: Any, table: str) -> dict[str, dict[str, str]]:
    """Every instance's slot holders (a consistent scan: one small item per instance)."""
    pages = dynamodb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True)
    return {item["instanceId"]["S"]: holders_of(item) for page in pages for item in page["Items"]}
