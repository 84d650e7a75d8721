"""Example job: count the words, lines and characters of input["text"].

python -m callback_wrapper --job examples.word_count:run
"""

from __future__ import annotations

from typing import Any


class EmptyInput(ValueError):
    """A job's own error: the execution fails with error "WordCount.EmptyInput"."""

    error = "WordCount.EmptyInput"


def run(job_input: dict[str, Any]) -> dict[str, Any]:
    text = job_input.get("text")
    if not isinstance(text, str) or not text.strip():
        raise EmptyInput('input "text" must be a non-empty string')
    return {"words": len(text.split()), "lines": len(text.splitlines()), "characters": len(text)}
