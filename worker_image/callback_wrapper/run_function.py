"""The job process for `--job module:function`: read the input file, call the function,
write its result to the file JOB_RESULT_PATH names. It runs as the wrapper's child, so a crash, a hang or
an out-of-memory kill here never takes the wrapper (and its heartbeats and signal) down.

    python -m callback_wrapper.run_function module:function
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import traceback
from typing import Any

from .outcome import compact_json


class JobSetupError(Exception):
    """The job cannot be called: bad target, unreadable or malformed input."""


def load_function(target: str) -> Any:
    module_name, _, attribute = target.partition(":")
    try:
        function: Any = importlib.import_module(module_name)
        for name in attribute.split("."):
            function = getattr(function, name)
    except (ImportError, AttributeError) as exc:
        raise JobSetupError(f"cannot load job function {target!r}: {exc}") from exc
    if not callable(function):
        raise JobSetupError(f"job function {target!r} is not callable")
    return function


def read_input(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as file:
            raw = file.read()
    except OSError as exc:
        raise JobSetupError(f"cannot read the job input {path}: {exc.strerror}") from exc
    try:
        job_input = json.loads(raw)
    except ValueError as exc:
        raise JobSetupError(f"the job input {path} is not valid JSON: {exc}") from exc
    if not isinstance(job_input, dict):
        raise JobSetupError(f"the job input {path} is not a JSON object")
    return job_input


def write_result(message: dict[str, Any]) -> None:
    encoded = compact_json(message)  # first: output that is not JSON leaves the file empty
    with open(os.environ["JOB_RESULT_PATH"], "w", encoding="utf-8") as file:
        file.write(encoded)


def main(argv: list[str]) -> int:
    (target,) = argv
    try:
        function = load_function(target)
        job_input = read_input(os.environ["JOB_INPUT_PATH"])
    except JobSetupError as exc:
        print(f"callback_wrapper: {exc}", file=sys.stderr)
        return 1
    try:
        output = function(job_input)
    except Exception as exc:
        traceback.print_exc()
        # A job names its own errors with an `error` attribute on the exception class.
        error = getattr(exc, "error", None)
        if isinstance(error, str):
            write_result({"error": error, "cause": str(exc)})
        return 1
    if not isinstance(output, dict):
        print(f"callback_wrapper: {target} returned {type(output).__name__}, not a dict", file=sys.stderr)
        return 1
    try:
        write_result({"output": output})
    except (TypeError, ValueError) as exc:
        print(f"callback_wrapper: the output of {target} is not JSON: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
