"""The `host` fixture: a fresh Host (tests/host/host_harness.py) in the test's own tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest
from host_harness import Host


@pytest.fixture
def host(tmp_path: Path) -> Host:
    return Host(tmp_path)
