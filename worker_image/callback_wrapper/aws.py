"""What the wrapper's AWS calls share: where a client connects, and how an error is reported."""

from __future__ import annotations

from typing import TypedDict

from botocore.exceptions import BotoCoreError, ClientError

from .settings import Settings


class ClientOptions(TypedDict):
    region_name: str
    endpoint_url: str | None


def client_options(settings: Settings) -> ClientOptions:
    # Explicit: old botocore (Debian bookworm's 1.29) reads neither AWS_REGION nor AWS_ENDPOINT_URL.
    return {"region_name": settings.region, "endpoint_url": settings.endpoint_url}


def describe_error(exc: BotoCoreError | ClientError) -> dict[str, str]:
    """The error code and message of a failed call: what logs and causes show (AWS puts no
    credentials in them)."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return {"error": error.get("Code", "Unknown"), "message": error.get("Message", "")}
    return {"error": type(exc).__name__, "message": str(exc)}
