"""The scripts as SSM documents carry them: text only, run by the agent as `sh -c <file>`."""

from __future__ import annotations

import ast
import re
import subprocess

import pytest
from host_harness import HOST_SCRIPTS, Host

SCRIPTS = ["run_container.sh", "stop_container.sh"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_text_is_safe_to_embed(script: str) -> None:
    text = (HOST_SCRIPTS / script).read_text(encoding="utf-8")

    assert text.startswith("#!/bin/bash\n")  # the agent's `sh -c <file>` execs the file: bash, not dash
    assert "{{" not in text  # SSM would interpolate it
    assert text.splitlines() == text.split("\n")[:-1]  # one runCommand element per line, nothing lost
    assert "$0" not in text
    assert "BASH_SOURCE" not in text  # never looks for sibling files


def test_embedded_python_is_python_3_9() -> None:
    """Amazon Linux 2023's python3 is 3.9: the heredoc program must not need anything newer."""
    text = (HOST_SCRIPTS / "run_container.sh").read_text(encoding="utf-8")
    programs = re.findall(r"<<'PY'\n(.*?)\nPY\n", text, re.DOTALL)

    assert len(programs) == 1
    ast.parse(programs[0], feature_version=(3, 9))
    for newer in ("tomllib", "ExceptionGroup", "datetime.UTC", "strict=", "TaskGroup", "| None"):  # 3.10+
        assert newer not in programs[0]


def test_runs_as_the_agent_runs_it(host: Host) -> None:
    """`sh -c <path>` from another directory, as amazon-ssm-agent's runShellScript does."""
    script = host.prepare()
    result = subprocess.run(
        ["/bin/sh", "-c", str(script)],
        cwd="/",
        env=host.environment(None, None),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert "run-job: signalled success" in result.stdout


@pytest.mark.parametrize("script", SCRIPTS)
def test_refuses_to_run_under_a_posix_sh(host: Host, script: str) -> None:
    text = (HOST_SCRIPTS / script).read_text(encoding="utf-8")

    result = subprocess.run(
        ["/bin/dash", "-s"], input=text, env=host.environment(None, None), capture_output=True, text=True, check=False
    )

    assert result.returncode == 2
    assert "needs bash" in result.stderr
    assert host.argvs() == []
