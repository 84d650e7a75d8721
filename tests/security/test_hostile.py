"""Hostile strings the dispatch ACCEPTS stay inert all the way to the container.

The dispatch refuses hostile strings in every structured field (tests/unit: the request battery in
test_dispatch.py, the catalog battery in test_catalog.py). What it accepts as free text, a job
type's command elements and env values and anything inside the request's input, reaches the REAL
run-container script through the job record the dispatch code writes (support.run_on_host). There
each string must stay one argv element of the container's command, one env value, or bytes of
/job/input.json, and nothing it spells may run.

The strings are tests/unit's HOSTILE battery, with every command they would run turned into
`mkdir MARKER`: mkdir is on the script's PATH (the harness's shims), so an injection would leave
the marker behind, and the harness records the argv of every process the script starts.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dispatch.catalog import CatalogError, JobType, parse_job_type
from tests.host.host_harness import TOKEN, Host
from tests.unit.support import HOSTILE, STACK, catalog_entries

from .support import run_on_host

# How the battery's payloads become harmless probes that leave evidence.
PAYLOADS = ("rm -rf /", "curl -s http://169.254.169.254/", "id", "touch")
OPTION_LIKE = ["--privileged", "--cap-add=ALL", "--security-opt=seccomp=unconfined", "--pid=host", "-v", "/:/host"]


def probes(marker: Path) -> dict[str, str]:
    """The battery, live: case -> string. Free text a catalog cannot hold (NUL, over 4 KiB) is
    left out: the catalog refuses it (tests/unit/test_catalog.py)."""
    found = {}
    for case, text in HOSTILE.items():
        for payload in PAYLOADS:
            text = text.replace(payload, f"mkdir {marker}")
        if "\x00" not in text and len(text) <= 4096:
            found[case] = text
    found |= {f"option-{index}": option for index, option in enumerate(OPTION_LIKE)}
    found["quoted-injection"] = f"'\"; mkdir {marker}; echo \"'"
    found["long-with-substitution"] = "a" * 3000 + f"$(mkdir {marker})"
    return found


def hostile_job_type(strings: dict[str, str]) -> JobType:
    entry = catalog_entries(STACK)["checksum"]
    entry["command"] = ["--job", "examples.checksum:run", *strings.values()]
    entry["env"] = {f"PROBE_{index}": text for index, text in enumerate(strings.values())}
    return parse_job_type("checksum", json.dumps(entry))


def test_the_battery_is_live(tmp_path: Path) -> None:
    """Guards the test below: every payload became a probe, and enough of the battery is left."""
    live = probes(tmp_path / "pwned")
    assert sum(f"mkdir {tmp_path / 'pwned'}" in text for text in live.values()) >= 4
    assert not any(payload in text for text in live.values() for payload in PAYLOADS[:2])
    assert len(live) >= len(HOSTILE) - 2 + len(OPTION_LIKE)


def test_accepted_hostile_strings_reach_the_container_inert(tmp_path: Path) -> None:
    host = Host(tmp_path / "host")
    marker = tmp_path / "pwned"
    strings = probes(marker)
    job_type = hostile_job_type(strings)
    job_input = {"probes": list(strings.values()), **strings}

    result, record = run_on_host(host, job_type, job_input)

    assert not marker.exists(), "a hostile string was executed"
    assert result.rc == 0, result.stderr
    assert host.signal()["payload"]["output"]  # the job ran to its end and succeeded
    run = host.docker_run()
    assert run["command"] == job_type.command  # each string one argv element, in order
    assert {name: run["env"][name] for name in job_type.env} == job_type.env
    captured = (host.dir / "captured-input.json").read_bytes()
    assert captured == record["input"]["S"].encode("utf-8")
    assert json.loads(captured) == job_input
    distinctive = [text for text in strings.values() if len(text.strip()) >= 6]
    for argv in host.argvs():
        if argv[:2] == ["docker", "run"]:
            image_at = argv.index(run["image"])
            assert not [text for text in distinctive if text in argv[:image_at]], "a string became a docker option"
            continue
        assert not [text for text in distinctive if any(text in element for element in argv)], argv[:4]
        assert not [element for element in argv if TOKEN in element]


@pytest.mark.parametrize("case", ["nul", "very-long"])
def test_free_text_no_process_could_receive_is_refused_by_the_catalog(case: str) -> None:
    with pytest.raises(CatalogError, match=r"^command\[2\]: "):
        hostile_job_type({case: HOSTILE[case]})
