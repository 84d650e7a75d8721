"""Fixtures shared by every test folder: moto with the local stack's fixes, the template's
resources created from template.yaml itself, and the dispatch function imported with the
environment the template gives it.

    def test_something(dispatch_app, lambda_context, deployment): ...

Everything runs in-process against moto (no network). `src/` and the repository root are put
on sys.path here, as Lambda puts CodeUri on it: tests import `dispatch.app` and `local_stack`.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
import yaml
from moto import mock_aws

ROOT = Path(__file__).resolve().parent.parent
for _path in (ROOT / "src", ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from local_stack import moto_fixes, resources  # noqa: E402
from local_stack.lambda_runtime import Context  # noqa: E402
from local_stack.template import Stack  # noqa: E402

REGION = "us-east-1"
POOL_SIZE = 3
DISPATCH_FUNCTION = "DispatchFunction"


@pytest.fixture(scope="session")
def stack() -> Stack:
    """template.yaml as the local stack deploys it (stack name run-job, us-east-1)."""
    return Stack(region=REGION)


@pytest.fixture(scope="session")
def boto_session() -> boto3.Session:
    """One session per test process: its loader keeps the service models, so clients are
    cheap to create (moto would otherwise start every test on a new default session)."""
    return boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, boto_session: boto3.Session) -> Iterator[None]:
    """moto in-process with fake credentials; no profile, config file or endpoint leaks in.
    `boto3.client(...)` (as our code calls it) uses `boto_session` while the mock is active."""
    for name in list(os.environ):
        if name.startswith(("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    # moto's EC2 would otherwise build ~75,000 public AMIs per test (most of a test's time).
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
    # The run-container document embeds the host script: moto and local_stack parse and dump
    # it as YAML on every create and send. libyaml does the same work several times faster.
    if yaml.__with_libyaml__:
        monkeypatch.setattr(yaml, "safe_load", functools.partial(yaml.load, Loader=yaml.CSafeLoader))
        monkeypatch.setattr(yaml, "safe_dump", functools.partial(yaml.dump, Dumper=yaml.CSafeDumper))
    # Module state of the fixes: no local agent, every instance answering.
    monkeypatch.setattr(moto_fixes, "command_sink", None)
    monkeypatch.setattr(moto_fixes, "lost_instances", set())
    with mock_aws():
        moto_fixes.apply()
        monkeypatch.setattr(boto3, "DEFAULT_SESSION", boto_session)
        yield


@dataclass(frozen=True)
class Deployment:
    """The template's resources in moto, and clients to inspect them."""

    stack: Stack
    job_table: str
    slot_table: str
    documents: dict[str, str]  # logical id -> document name
    catalog: list[str]  # parameter names of the job type catalog
    instance_ids: list[str]  # worker instances carrying the pool tag
    ssm: Any
    dynamodb: Any
    ec2: Any

    @property
    def run_container_document(self) -> str:
        return self.documents["RunContainerDocument"]


@pytest.fixture
def deployment(aws: None, stack: Stack, boto_session: boto3.Session) -> Deployment:
    ssm = boto_session.client("ssm")
    dynamodb = boto_session.client("dynamodb")
    ec2 = boto_session.client("ec2")
    tables = resources.create_tables(dynamodb, stack)
    return Deployment(
        stack=stack,
        job_table=tables["JobTable"],
        slot_table=tables["SlotTable"],
        documents=resources.create_documents(ssm, stack),
        catalog=resources.put_catalog(ssm, stack),
        instance_ids=resources.create_instances(ec2, stack, POOL_SIZE),
        ssm=ssm,
        dynamodb=dynamodb,
        ec2=ec2,
    )


class _CurrentStdout:
    """Writes to whatever sys.stdout is now (capsys, capfd or pytest's own capture), as
    Lambda collects a function's stdout; Powertools' handler otherwise keeps the stream that
    was current when the first Logger was built."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


def _import_fresh(name: str) -> ModuleType:
    if name in sys.modules:
        return importlib.reload(sys.modules[name])
    return importlib.import_module(name)


@pytest.fixture
def dispatch_app(deployment: Deployment, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """`dispatch.app`, (re)imported inside moto with the function's environment from the
    template: its module-scope clients, settings and catalog cache are new for each test."""
    for key, value in resources.function_environment(deployment.stack, DISPATCH_FUNCTION).items():
        monkeypatch.setenv(key, value)
    app = _import_fresh("dispatch.app")
    handler = app.logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(_CurrentStdout())
    return app


@pytest.fixture
def lambda_context(stack: Stack) -> Context:
    """What Lambda passes as context (the local stack's own stand-in)."""
    name = stack.physical_name(DISPATCH_FUNCTION)
    return Context(
        function_name=name,
        memory_limit_in_mb=256,
        invoked_function_arn=stack.arn("lambda", f"function:{name}"),
        aws_request_id="c0ffee00-0000-4000-8000-000000000001",
        deadline=time.monotonic() + 30,
    )
