"""Without any container engine the local stack still runs the real chain: the document
script under bash and the callback wrapper as a local process (local_stack/process_engine.py)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local_stack.__main__ import down, up
from local_stack.client import LocalStackClient

pytestmark = pytest.mark.xdist_group("process-engine")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStackClient]:
    state_dir = tmp_path_factory.mktemp("process-engine")
    previous = os.environ.get("RUN_JOB_ENGINE")
    os.environ["RUN_JOB_ENGINE"] = "process"
    try:
        state = up(state_dir, instances=1, slots=None)
    finally:
        os.environ.pop("RUN_JOB_ENGINE") if previous is None else os.environ.update(RUN_JOB_ENGINE=previous)
    try:
        yield LocalStackClient(state)
    finally:
        down(state_dir)


def test_the_stack_says_it_has_no_engine(stack: LocalStackClient) -> None:
    assert stack.state["engine"] == "none"
    log = (Path(stack.state["state_dir"]) / "server.log").read_text()
    assert "no container engine reachable: jobs run as local processes" in log


def test_a_job_succeeds_through_the_document_script_and_the_wrapper(stack: LocalStackClient) -> None:
    request: dict[str, Any] = {"jobType": "word-count", "input": {"text": "no engine, still one signal"}}
    outcome = stack.run(request, timeout=90)
    assert outcome.status == "SUCCEEDED", outcome
    assert outcome.output == {"words": 5, "lines": 1, "characters": 27}


def test_a_failing_job_fails_with_its_exit_code(stack: LocalStackClient) -> None:
    outcome = stack.run({"jobType": "checksum", "input": {"exitCode": 3}}, timeout=90)
    assert (outcome.status, outcome.error) == ("FAILED", "Job.Failed"), outcome
    assert json.loads(outcome.cause or "{}")["exitCode"] == 3
