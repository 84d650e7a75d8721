"""Pure decisions of the callback wrapper: output parsing, size limit, error names, cause."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callback_wrapper.outcome import (
    CAPTURE_CAP_BYTES,
    MAX_CAUSE_CHARS,
    MAX_OUTPUT_BYTES,
    Captured,
    Decision,
    DeclaredError,
    Failure,
    InvalidResult,
    JobEnd,
    OutputTooLarge,
    StopReason,
    Success,
    build_cause,
    decide,
    encode_output,
    output_from_stdout,
    parse_result,
    refusal_of_error_name,
)

JOB_ID = "job-0123456789abcdef0123456789abcdef"


def line(text: str) -> Captured:
    data = text.encode()
    return Captured(data, len(data))


def end(exit_code: int = 0, result: str = "", stdout_line: str = "", tail: str = "the log") -> JobEnd:
    return JobEnd(exit_code, line(result), line(stdout_line), tail)


# --- output


def test_output_at_the_limit_passes_and_one_byte_more_does_not() -> None:
    overhead = len('{"x":""}')
    assert len(encode_output({"x": "a" * (MAX_OUTPUT_BYTES - overhead)})) == MAX_OUTPUT_BYTES
    with pytest.raises(OutputTooLarge, match=f"{MAX_OUTPUT_BYTES + 1} bytes"):
        encode_output({"x": "a" * (MAX_OUTPUT_BYTES - overhead + 1)})


def test_output_size_counts_utf8_bytes_not_characters() -> None:
    # 3 bytes each in UTF-8, not escaped: well under the limit in characters, over it in bytes.
    with pytest.raises(OutputTooLarge):
        encode_output({"x": "€" * (MAX_OUTPUT_BYTES // 3 + 1)})


def test_output_is_compact_json() -> None:
    assert encode_output({"a": [1, 2], "b": "é"}) == '{"a":[1,2],"b":"é"}'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a": 1}', {"a": 1}),
        ('  {"a": 1}  \n', {"a": 1}),
        ("[1, 2]", {"exitCode": 0}),
        ('"text"', {"exitCode": 0}),
        ("done", {"exitCode": 0}),
        ("{not json", {"exitCode": 0}),
        ("", {"exitCode": 0}),
    ],
)
def test_output_from_stdout(text: str, expected: dict[str, object]) -> None:
    assert output_from_stdout(line(text)) == expected


def test_a_cut_stdout_line_that_starts_an_object_is_too_large() -> None:
    assert output_from_stdout(Captured(b"cut text", CAPTURE_CAP_BYTES + 1)) == {"exitCode": 0}
    with pytest.raises(OutputTooLarge, match=f"{CAPTURE_CAP_BYTES + 1} bytes"):
        output_from_stdout(Captured(b'{"x": "cut', CAPTURE_CAP_BYTES + 1))


# --- the result pipe


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", None),
        ('{"output": {"a": 1}}', {"a": 1}),
        ('{"error": "Thumbnail.BadImage"}', DeclaredError("Thumbnail.BadImage", None)),
        ('{"error": "A.B", "cause": "why"}', DeclaredError("A.B", "why")),
    ],
)
def test_parse_result(text: str, expected: object) -> None:
    assert parse_result(line(text)) == expected


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        '{"output": [1]}',
        '{"output": {}, "extra": 1}',
        '{"error": 5}',
        '{"error": "A.B", "cause": {"not": "text"}}',
        '{"cause": "no error"}',
    ],
)
def test_parse_result_refuses_what_breaks_the_protocol(text: str) -> None:
    with pytest.raises(InvalidResult):
        parse_result(line(text))


# --- error names


@pytest.mark.parametrize("name", ["WordCount.EmptyInput", "Thumbnail.Bad-Image", "a.b.c", "My_Job.X1"])
def test_job_error_names_allowed(name: str) -> None:
    assert refusal_of_error_name(name) is None


@pytest.mark.parametrize(
    "name",
    ["Job.Failed", "Job.Anything", "States.Timeout", "States.ALL", "NoPrefix", "A.", ".B", "A B.C", "A." + "b" * 300],
)
def test_job_error_names_refused(name: str) -> None:
    assert refusal_of_error_name(name) is not None


# --- cause


def test_cause_is_json_with_job_id_exit_code_and_tail() -> None:
    assert json.loads(build_cause(JOB_ID, 3, "last words\n")) == {
        "jobId": JOB_ID,
        "exitCode": 3,
        "logTail": "last words\n",
    }


def test_cause_keeps_the_end_of_a_long_tail() -> None:
    tail = "".join(f"line {n}\n" for n in range(20_000))

    cause = build_cause(JOB_ID, 1, tail, "a message")

    # As long as it can be: one more char (2 in JSON if a newline) would not fit.
    assert MAX_CAUSE_CHARS - 2 < len(cause) <= MAX_CAUSE_CHARS
    parsed = json.loads(cause)
    assert parsed["message"] == "a message"
    assert parsed["logTail"].endswith("line 19999\n")
    assert tail.endswith(parsed["logTail"])


@given(tail=st.text(), message=st.none() | st.text(max_size=5_000))
def test_cause_always_fits_and_is_a_suffix_of_the_tail(tail: str, message: str | None) -> None:
    cause = build_cause(JOB_ID, 137, tail * 50, message)

    assert len(cause) <= MAX_CAUSE_CHARS
    parsed = json.loads(cause)
    assert (tail * 50).endswith(parsed["logTail"])


def test_cause_fits_even_when_every_char_needs_escaping() -> None:
    cause = build_cause(JOB_ID, 1, "\x00" * 100_000, "\x01" * 10_000)

    assert len(cause) <= MAX_CAUSE_CHARS
    assert json.loads(cause)["logTail"]


# --- decide


def test_success_with_a_result() -> None:
    assert decide(end(result='{"output": {"n": 1}}'), JOB_ID, None) == Decision(Success('{"n":1}'), 0)


def test_success_falls_back_to_the_last_stdout_line() -> None:
    assert decide(end(stdout_line='{"n": 2}'), JOB_ID, None) == Decision(Success('{"n":2}'), 0)


def test_a_result_output_wins_over_stdout() -> None:
    decision = decide(end(result='{"output": {"from": "fd"}}', stdout_line='{"from": "stdout"}'), JOB_ID, None)
    assert decision.signal == Success('{"from":"fd"}')


def test_non_zero_exit_is_job_failed_whatever_the_output() -> None:
    decision = decide(end(exit_code=2, result='{"output": {"n": 1}}', tail="boom"), JOB_ID, None)

    assert decision == Decision(Failure("Job.Failed", build_cause(JOB_ID, 2, "boom")), 2)


def test_declared_error_with_exit_0_still_fails_and_exits_1() -> None:
    decision = decide(end(result='{"error": "A.B", "cause": "why"}'), JOB_ID, None)

    assert decision == Decision(Failure("A.B", "why"), 1)


def test_declared_error_without_cause_gets_the_standard_cause() -> None:
    decision = decide(end(exit_code=5, result='{"error": "A.B"}', tail="t"), JOB_ID, None)

    assert decision == Decision(Failure("A.B", build_cause(JOB_ID, 5, "t")), 5)


def test_declared_reserved_error_becomes_job_failed() -> None:
    decision = decide(end(exit_code=1, result='{"error": "States.Timeout"}'), JOB_ID, None)

    assert isinstance(decision.signal, Failure)
    assert decision.signal.error == "Job.Failed"
    assert "'States.Timeout'" in json.loads(decision.signal.cause)["message"]


def test_declared_cause_is_capped() -> None:
    decision = decide(end(exit_code=1, result=json.dumps({"error": "A.B", "cause": "x" * 40_000})), JOB_ID, None)

    assert isinstance(decision.signal, Failure)
    assert len(decision.signal.cause) == MAX_CAUSE_CHARS


def test_output_too_large_fails_with_its_own_name() -> None:
    decision = decide(end(stdout_line=json.dumps({"x": "a" * MAX_OUTPUT_BYTES})), JOB_ID, None)

    assert isinstance(decision.signal, Failure)
    assert (decision.signal.error, decision.exit_code) == ("Job.OutputTooLarge", 1)


def test_broken_result_is_job_failed_with_a_message() -> None:
    decision = decide(end(result="garbage"), JOB_ID, None)

    assert isinstance(decision.signal, Failure)
    assert decision.signal.error == "Job.Failed"
    assert json.loads(decision.signal.cause)["message"].startswith("the job's result is not JSON")


def test_closed_task_sends_nothing_and_exits_143() -> None:
    assert decide(end(result='{"output": {}}'), JOB_ID, StopReason.TASK_CLOSED) == Decision(None, 143)


def test_terminated_job_is_left_to_whoever_stopped_it_and_exits_143() -> None:
    assert decide(end(exit_code=143, tail="bye"), JOB_ID, StopReason.TERMINATED) == Decision(None, 143)


def test_sigkill_not_sent_by_the_wrapper_is_left_to_the_host_guard() -> None:
    assert decide(end(exit_code=137), JOB_ID, None) == Decision(None, 137)
