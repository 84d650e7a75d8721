"""Talking to Step Functions: heartbeats while the job runs, one signal when it ends."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from .aws import client_options, describe_error
from .jsonlog import JsonLog
from .outcome import Failure, Success
from .settings import Settings

if TYPE_CHECKING:  # the stubs are a development dependency, not in the image
    from mypy_boto3_stepfunctions import SFNClient

# Answers that mean the task is over (completed, timed out, execution stopped): nobody
# waits for this job any more.
TASK_CLOSED_ERRORS = frozenset({"TaskTimedOut", "TaskDoesNotExist", "InvalidToken"})
_CONNECT_TIMEOUT_SECONDS = 5
_READ_TIMEOUT_SECONDS = 10
# Heartbeats: one attempt per tick. A failed heartbeat is retried on the next tick, which
# comes sooner than a backoff would, and a call never outlasts the tick by much.
HEARTBEAT_CONFIG = Config(
    connect_timeout=_CONNECT_TIMEOUT_SECONDS,
    read_timeout=_READ_TIMEOUT_SECONDS,
    retries={"mode": "standard", "max_attempts": 1},
)
# The one signal: worth retrying through throttling and short outages.
SIGNAL_CONFIG = Config(
    connect_timeout=_CONNECT_TIMEOUT_SECONDS,
    read_timeout=_READ_TIMEOUT_SECONDS,
    retries={"mode": "adaptive", "max_attempts": 4},
)


def make_client(settings: Settings, config: Config) -> SFNClient:
    return boto3.client("stepfunctions", config=config, **client_options(settings))


class Heartbeats:
    """SendTaskHeartbeat now and every `interval` seconds until stopped, in a thread.
    An answer that the task is closed calls `on_task_closed` and ends the heartbeats;
    anything else is logged and retried on the next tick."""

    def __init__(
        self,
        client: SFNClient,
        token: str,
        interval: int,
        log: JsonLog,
        on_task_closed: Callable[[], None],
    ) -> None:
        self._client = client
        self._token = token
        self._interval = interval
        self._log = log
        self._on_task_closed = on_task_closed
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeats", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        # A heartbeat in flight ends within the client's timeouts; not waiting longer
        # keeps the final signal prompt.
        self._thread.join(_READ_TIMEOUT_SECONDS)

    def _run(self) -> None:
        while self._beat() and not self._stopped.wait(self._interval):
            pass

    def _beat(self) -> bool:
        """Send one heartbeat; False when the task is closed."""
        try:
            self._client.send_task_heartbeat(taskToken=self._token)
        except (BotoCoreError, ClientError) as exc:
            details = describe_error(exc)
            if details["error"] in TASK_CLOSED_ERRORS:
                self._log.warning("task closed: stopping the job", **details)
                self._on_task_closed()
                return False
            self._log.warning("heartbeat failed: retrying on the next tick", **details)
            return True
        self._log.info("heartbeat sent")
        return True


def send_signal(client: SFNClient, token: str, signal: Success | Failure, log: JsonLog) -> bool:
    """Send the job's one signal. True when it was delivered or the task was already closed
    (someone else decided first: that is not an error); False when it could not be sent."""
    try:
        if isinstance(signal, Success):
            client.send_task_success(taskToken=token, output=signal.output)
        else:
            client.send_task_failure(taskToken=token, error=signal.error, cause=signal.cause)
    except (BotoCoreError, ClientError) as exc:
        details = describe_error(exc)
        if details["error"] in TASK_CLOSED_ERRORS:
            log.info("task already closed: signal not needed", **details)
            return True
        log.error("signal not delivered", **details)
        return False
    if isinstance(signal, Success):
        log.info("signalled success", outputBytes=len(signal.output.encode("utf-8")))
    else:
        log.info("signalled failure", error=signal.error)
    return True
