"""Container hardening holds for every job type the dispatch accepts (README, "Container hardening").

Catalog entries, the seeded ones and generated ones full of option-like strings, go through the
dispatch code (catalog, request checks, job record) into the REAL run-container script
(support.run_on_host). Its `docker run` argv must carry the hardening options with the job type's
limits, and never an option that loosens isolation: whatever a catalog entry says, it can only
tune the limits, never reach docker's options.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dispatch.catalog import CatalogError, JobType, parse_job_type
from tests.host.fake_cli import DOCKER_BOOL_FLAGS, DOCKER_VALUE_FLAGS
from tests.host.host_harness import PARAMS, Host
from tests.unit.support import HOSTILE, REPOSITORY, STACK, catalog_entries

from .support import run_on_host

SEEDED = catalog_entries(STACK)
# What would loosen isolation; none may ever appear before the image.
FORBIDDEN_FLAGS = {
    "--privileged",
    "--cap-add",
    "--pid",
    "--ipc",
    "--uts",
    "--userns",
    "--cgroupns",
    "--device",
    "--mount",
    "--volumes-from",
    "--group-add",
    "--security-opt=seccomp=unconfined",
}
OPTION_LIKE = [
    "--privileged",
    "--cap-add",
    "SYS_ADMIN",
    "--cap-add=ALL",
    "--security-opt",
    "seccomp=unconfined",
    "apparmor=unconfined",
    "--pid",
    "host",
    "--pid=host",
    "-v",
    "/:/host",
    "--volume=/:/host",
    "--mount",
    "type=bind,src=/,dst=/host",
    "--user",
    "0:0",
    "--device=/dev/mem",
    "--userns=host",
    "--network=host",
]
text = st.sampled_from(OPTION_LIKE) | st.sampled_from([value for value in HOSTILE.values() if len(value) < 200])
env_names = st.from_regex(r"[A-Z_][A-Z0-9_]{0,15}", fullmatch=True)
entries = st.fixed_dictionaries(
    {
        "image": st.sampled_from(
            [SEEDED["checksum"]["image"], f"{REPOSITORY}@sha256:{'a' * 64}", "localhost:5000/w:1"]
        ),
        "maxTimeoutSeconds": st.just(86_400),
        "maxHeartbeatSeconds": st.just(900),
    },
    optional={
        "command": st.lists(text, max_size=6),
        "cpu": st.floats(min_value=0.1, max_value=64) | st.integers(min_value=1, max_value=64),
        "memoryMiB": st.integers(min_value=16, max_value=1_048_576),
        "pidsLimit": st.integers(min_value=8, max_value=65_536),
        "stopGraceSeconds": st.integers(min_value=0, max_value=3600),
        "readOnlyRootFs": st.booleans(),
        "env": st.dictionaries(env_names, text, max_size=4),
        "allowImageOverride": st.booleans(),
        "allowedRegistryPrefixes": st.lists(st.sampled_from([REPOSITORY, "registry.example.com"]), max_size=2),
    },
)


def docker_run_argv(host: Host) -> list[str]:
    runs = [argv[2:] for argv in host.argvs() if argv[:2] == ["docker", "run"]]
    assert len(runs) == 1, runs
    return runs[0]


def options_and_rest(argv: list[str]) -> tuple[list[tuple[str, str | None]], list[str]]:
    """docker run's options (flag, value) up to the image, and the image with its command."""
    options: list[tuple[str, str | None]] = []
    rest = list(argv)
    while rest and rest[0].startswith("-"):
        flag = rest.pop(0)
        assert flag not in FORBIDDEN_FLAGS, f"docker run {flag}"
        assert flag.split("=", 1)[0] not in FORBIDDEN_FLAGS, f"docker run {flag}"
        if flag in DOCKER_BOOL_FLAGS:
            options.append((flag, None))
        else:
            assert flag in DOCKER_VALUE_FLAGS, f"docker run got an option the host side never uses: {flag}"
            options.append((flag, rest.pop(0)))
    return options, rest


def values(options: list[tuple[str, str | None]], flag: str) -> list[str | None]:
    return [value for name, value in options if name == flag]


def check_hardened(host: Host, job_type: JobType, job_id: str) -> None:
    options, rest = options_and_rest(docker_run_argv(host))
    assert rest == [job_type.image, *job_type.command]  # the command only ever follows the image
    assert values(options, "--init") == [None]
    assert values(options, "--user") == ["1000:1000"]
    assert values(options, "--cap-drop") == ["ALL"]
    assert values(options, "--security-opt") == ["no-new-privileges"]
    assert values(options, "--pids-limit") == [str(job_type.pids_limit)]
    assert values(options, "--memory") == values(options, "--memory-swap") == [f"{job_type.memory_mib}m"]
    assert len(values(options, "--cpus")) == 1
    assert values(options, "--network") == [PARAMS["Network"]]  # the stack's setting, not the job type's
    read_only = [None] if job_type.read_only_root_fs else []
    assert (values(options, "--read-only"), values(options, "--tmpfs")) == (read_only, ["/tmp"] * len(read_only))
    job_dir = host.root / "jobs" / job_id
    assert values(options, "-v") == [f"{job_dir}/input.json:/job/input.json:ro", f"{job_dir}/out:/job/out"]
    assert all(value is not None and "=" not in value for value in values(options, "--env"))  # names only


def run_and_check(directory: Path, job_type: JobType) -> None:
    host = Host(directory)
    result, record = run_on_host(host, job_type, {})
    assert result.rc == 0, result.stderr
    check_hardened(host, job_type, record["jobId"]["S"])


@pytest.mark.parametrize("name", sorted(SEEDED))
def test_seeded_job_types_run_hardened(name: str, tmp_path: Path) -> None:
    run_and_check(tmp_path, parse_job_type(name, SEEDED[name]))


@settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(entry=entries)
def test_any_accepted_catalog_entry_runs_hardened(entry: dict[str, Any]) -> None:
    try:
        job_type = parse_job_type("generated", entry)
    except CatalogError:
        return  # refused entries never run (tests/unit/test_catalog.py)
    with tempfile.TemporaryDirectory(prefix="hardening-") as directory:
        run_and_check(Path(directory), job_type)


def test_the_check_catches_a_loosened_run(tmp_path: Path) -> None:
    """check_hardened itself: an argv with --privileged (as a script bug would emit) is refused."""
    options = ["--detach", "--init", "--privileged", "--user", "1000:1000"]
    with pytest.raises(AssertionError, match="--privileged"):
        options_and_rest([*options, "image:1"])
    with pytest.raises(AssertionError, match="--cap-add"):
        options_and_rest(["--cap-add=SYS_ADMIN", "image:1"])
