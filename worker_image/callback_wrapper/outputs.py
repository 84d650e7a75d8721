"""Outputs over Step Functions' limit: written to the output bucket before the task succeeds
with a pointer to them (outcome.StoredOutput)."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from .aws import client_options, describe_error
from .jsonlog import JsonLog
from .outcome import StoredOutput
from .settings import Settings

if TYPE_CHECKING:  # the stubs are a development dependency, not in the image
    from mypy_boto3_s3 import S3Client

# One upload per job, as worth retrying as the signal. S3 answers once it has the whole body
# (up to 64 MiB): the read timeout leaves it time to.
S3_CONFIG = Config(connect_timeout=5, read_timeout=60, retries={"mode": "adaptive", "max_attempts": 4})


def make_client(settings: Settings) -> S3Client:
    return boto3.client("s3", config=S3_CONFIG, **client_options(settings))


def put_output(client: S3Client, stored: StoredOutput, log: JsonLog) -> str | None:
    """Write the output object. None when it is written, else why not (for the cause)."""
    try:
        client.put_object(
            Bucket=stored.bucket,
            Key=stored.key,
            Body=stored.body,
            ContentType="application/json",
            # Asked for, not left to the bucket's default: encrypted in a bucket made by hand too.
            ServerSideEncryption="AES256",
            # Ours, computed once: S3 refuses a body that does not match it and keeps it with the
            # object, so the pointer's sha256 holds from the wrapper to whoever reads the object.
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=base64.b64encode(stored.sha256).decode("ascii"),
        )
    except (BotoCoreError, ClientError) as exc:
        details = describe_error(exc)
        log.error("output not stored", uri=stored.uri, **details)
        return f"{details['error']}: {details['message']}"
    log.info("output stored", uri=stored.uri, outputBytes=len(stored.body))
    return None
