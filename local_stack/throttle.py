"""Throttling bursts on demand, for the tests: the next N calls of chosen operations are
answered as AWS answers a caller over its rate (ThrottlingException; EC2: RequestLimitExceeded)
and are not carried out, so the callers' retry modes are what keeps the work from being lost.

`install()` wraps moto's response dispatch once (in-process moto and the local stack's server
alike); `arm({"ssm:SendCommand": 5, "dynamodb:PutItem": 5})` sets a burst (service names as
moto's: ssm, dynamodb, ec2, stepfunctions); `status()` says what was served and what is left.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from moto.core.responses import BaseResponse

_remaining: dict[str, int] = {}
_served: dict[str, int] = {}
_lock = threading.Lock()
_original_call_action = BaseResponse.call_action
EC2_THROTTLED = (
    '<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>RequestLimitExceeded</Code>'
    "<Message>Request limit exceeded.</Message></Error></Errors><RequestID>throttled</RequestID></Response>"
)


def arm(burst: dict[str, int]) -> None:
    """Throttle the next `count` calls of each "service:Operation" (added to what is left)."""
    with _lock:
        for operation, count in burst.items():
            _remaining[operation] = _remaining.get(operation, 0) + int(count)


def disarm() -> None:
    with _lock:
        _remaining.clear()
        _served.clear()


def status() -> dict[str, dict[str, int]]:
    with _lock:
        return {"remaining": dict(_remaining), "served": dict(_served)}


def _throttled(operation: str) -> bool:
    with _lock:
        if _remaining.get(operation, 0) <= 0:
            return False
        _remaining[operation] -= 1
        _served[operation] = _served.get(operation, 0) + 1
        return True


def _call_action(self: BaseResponse) -> Any:
    if not _throttled(f"{self.service_name}:{self._get_action()}"):
        return _original_call_action(self)
    if self.service_name == "ec2":
        return 503, {"status": 503, "Content-Type": "text/xml"}, EC2_THROTTLED
    body = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"})
    return 400, {"status": 400, "Content-Type": "application/x-amz-json-1.0"}, body


def install() -> None:
    BaseResponse.call_action = _call_action  # type: ignore[method-assign]
