"""One local stack for the end-to-end tests (all on one xdist worker: they share it).

Without a container engine these tests skip with the reason, unless RUN_JOB_REQUIRE_DOCKER=1
(CI sets it), in which case they fail: CI must never pass by skipping them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from local_stack.__main__ import down, up
from local_stack.client import LocalStackClient
from tests.e2e.support import require_engine

# The reaper's schedule is 5 minutes in the template; the sweep test needs it sooner.
SWEEP_SECONDS = "5"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.path):
            # A module with a stack of its own (test_fleet.py) names its own group.
            if item.get_closest_marker("xdist_group") is None:
                item.add_marker(pytest.mark.xdist_group("e2e"))
            item.add_marker(pytest.mark.docker)


@pytest.fixture(scope="session")
def stack_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    require_engine()
    state_dir = tmp_path_factory.mktemp("local-stack")
    os.environ["RUN_JOB_SWEEP_SECONDS"] = SWEEP_SECONDS
    state = up(state_dir, instances=2, slots=None)
    try:
        yield state
    finally:
        down(state_dir)


@pytest.fixture
def stack(stack_state: dict[str, Any]) -> LocalStackClient:
    return LocalStackClient(stack_state)
