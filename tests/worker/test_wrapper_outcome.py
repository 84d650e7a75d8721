"""Pure decisions of the callback wrapper: output parsing, size limits, error names, cause."""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callback_wrapper.outcome import (
    CAPTURE_CAP_BYTES,
    MAX_CAUSE_CHARS,
    MAX_OUTPUT_BYTES,
    MAX_STORED_OUTPUT_BYTES,
    Captured,
    Decision,
    DeclaredError,
    Failure,
    InvalidResult,
    JobContext,
    JobEnd,
    OutputTooLarge,
    StopReason,
    StoredOutput,
    Success,
    build_cause,
    decide,
    encode_output,
    output_from_stdout,
    output_not_stored,
    parse_result,
    refusal_of_error_name,
)

JOB_ID = "job-0123456789abcdef0123456789abcdef"
JOB = JobContext(JOB_ID)
BUCKET = "run-job-outputs"
WITH_BUCKET = JobContext(JOB_ID, output_bucket=BUCKET)
# The compact JSON {"x": "aaa…"} is this many bytes longer than its string.
OVERHEAD = len('{"x":""}')


def line(text: str) -> Captured:
    data = text.encode()
    return Captured(data, len(data))


def end(exit_code: int = 0, result: str = "", stdout_line: str = "", tail: str = "the log") -> JobEnd:
    return JobEnd(exit_code, line(result), line(stdout_line), tail)


# --- output


@pytest.mark.parametrize("job", [JOB, WITH_BUCKET], ids=["no-bucket", "bucket"])
def test_output_at_the_limit_is_the_task_output(job: JobContext) -> None:
    encoded = encode_output({"x": "a" * (MAX_OUTPUT_BYTES - OVERHEAD)}, job)

    assert isinstance(encoded, Success)
    assert len(encoded.output) == MAX_OUTPUT_BYTES


def test_without_a_bucket_one_byte_over_the_limit_is_too_large() -> None:
    with pytest.raises(OutputTooLarge, match=f"{MAX_OUTPUT_BYTES + 1} bytes"):
        encode_output({"x": "a" * (MAX_OUTPUT_BYTES - OVERHEAD + 1)}, JOB)


def test_with_a_bucket_one_byte_over_the_limit_is_stored_as_compact_json() -> None:
    output = {"x": "a" * (MAX_OUTPUT_BYTES - OVERHEAD + 1), "b": "é"}

    encoded = encode_output(output, WITH_BUCKET)

    assert isinstance(encoded, StoredOutput)
    assert (encoded.bucket, encoded.key) == (BUCKET, f"outputs/{JOB_ID}.json")
    assert encoded.body == json.dumps(output, separators=(",", ":"), ensure_ascii=False).encode()
    assert encoded.uri == f"s3://{BUCKET}/outputs/{JOB_ID}.json"


def test_output_size_counts_utf8_bytes_not_characters() -> None:
    # 3 bytes each in UTF-8, not escaped: well under the limit in characters, over it in bytes.
    with pytest.raises(OutputTooLarge):
        encode_output({"x": "€" * (MAX_OUTPUT_BYTES // 3 + 1)}, JOB)


def test_the_largest_stored_output_is_stored_and_one_byte_more_is_too_large() -> None:
    largest = encode_output({"x": "a" * (MAX_STORED_OUTPUT_BYTES - OVERHEAD)}, WITH_BUCKET)

    assert isinstance(largest, StoredOutput)
    assert len(largest.body) == MAX_STORED_OUTPUT_BYTES
    with pytest.raises(OutputTooLarge, match=f"{MAX_STORED_OUTPUT_BYTES + 1} bytes"):
        encode_output({"x": "a" * (MAX_STORED_OUTPUT_BYTES - OVERHEAD + 1)}, WITH_BUCKET)


def test_output_is_compact_json() -> None:
    assert encode_output({"a": [1, 2], "b": "é"}, JOB) == Success('{"a":[1,2],"b":"é"}')


@pytest.mark.parametrize("number", ["NaN", "Infinity", "1e400"])
def test_an_output_number_json_cannot_carry_is_invalid_not_a_crash(number: str) -> None:
    with pytest.raises(InvalidResult, match="the job's output is not JSON"):
        encode_output(output_from_stdout(line(f'{{"x": {number}}}')), JOB)


def test_the_pointer_names_the_object_its_size_and_sha256() -> None:
    stored = StoredOutput(BUCKET, "outputs/job-1.json", b'{"big":"output"}')

    assert json.loads(stored.pointer().output) == {
        "outputLocation": {"bucket": BUCKET, "key": "outputs/job-1.json", "uri": f"s3://{BUCKET}/outputs/job-1.json"},
        "bytes": 16,
        "sha256": hashlib.sha256(b'{"big":"output"}').hexdigest(),
    }


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
    assert json.loads(build_cause(JOB, 3, "last words\n")) == {
        "jobId": JOB_ID,
        "exitCode": 3,
        "logTail": "last words\n",
    }


def test_cause_keeps_the_end_of_a_long_tail() -> None:
    tail = "".join(f"line {n}\n" for n in range(20_000))

    cause = build_cause(JOB, 1, tail, "a message")

    # As long as it can be: one more char (2 in JSON if a newline) would not fit.
    assert MAX_CAUSE_CHARS - 2 < len(cause) <= MAX_CAUSE_CHARS
    parsed = json.loads(cause)
    assert parsed["message"] == "a message"
    assert parsed["logTail"].endswith("line 19999\n")
    assert tail.endswith(parsed["logTail"])


@given(tail=st.text(), message=st.none() | st.text(max_size=5_000))
def test_cause_always_fits_and_is_a_suffix_of_the_tail(tail: str, message: str | None) -> None:
    cause = build_cause(JOB, 137, tail * 50, message)

    assert len(cause) <= MAX_CAUSE_CHARS
    parsed = json.loads(cause)
    assert (tail * 50).endswith(parsed["logTail"])


def test_cause_says_where_the_full_log_is_when_the_log_group_is_known() -> None:
    job = JobContext(JOB_ID, log_group="/run-job/jobs")

    assert json.loads(build_cause(job, 3, "tail")) == {
        "jobId": JOB_ID,
        "exitCode": 3,
        "logLocation": {"logGroup": "/run-job/jobs", "logStream": JOB_ID},
        "logTail": "tail",
    }


def test_cause_with_the_longest_log_group_still_keeps_the_end_of_the_tail() -> None:
    job = JobContext(JOB_ID, log_group="g" * 512)

    cause = json.loads(build_cause(job, 1, "x" * 100_000 + "THE END", "\x01" * 10_000))

    assert cause["logLocation"]["logGroup"] == "g" * 512
    assert cause["logTail"].endswith("THE END")


def test_cause_fits_even_when_every_char_needs_escaping() -> None:
    cause = build_cause(JOB, 1, "\x00" * 100_000, "\x01" * 10_000)

    assert len(cause) <= MAX_CAUSE_CHARS
    assert json.loads(cause)["logTail"]


# --- decide


def test_success_with_a_result() -> None:
    assert decide(end(result='{"output": {"n": 1}}'), JOB, None) == Decision(Success('{"n":1}'), 0)


def test_success_falls_back_to_the_last_stdout_line() -> None:
    assert decide(end(stdout_line='{"n": 2}'), JOB, None) == Decision(Success('{"n":2}'), 0)


def test_a_result_output_wins_over_stdout() -> None:
    decision = decide(end(result='{"output": {"from": "fd"}}', stdout_line='{"from": "stdout"}'), JOB, None)
    assert decision.signal == Success('{"from":"fd"}')


def test_non_zero_exit_is_job_failed_whatever_the_output() -> None:
    decision = decide(end(exit_code=2, result='{"output": {"n": 1}}', tail="boom"), JOB, None)

    assert decision == Decision(Failure("Job.Failed", build_cause(JOB, 2, "boom")), 2)


def test_declared_error_with_exit_0_still_fails_and_exits_1() -> None:
    decision = decide(end(result='{"error": "A.B", "cause": "why"}'), JOB, None)

    assert decision == Decision(Failure("A.B", "why"), 1)


def test_declared_error_without_cause_gets_the_standard_cause() -> None:
    decision = decide(end(exit_code=5, result='{"error": "A.B"}', tail="t"), JOB, None)

    assert decision == Decision(Failure("A.B", build_cause(JOB, 5, "t")), 5)


def test_declared_reserved_error_becomes_job_failed() -> None:
    decision = decide(end(exit_code=1, result='{"error": "States.Timeout"}'), JOB, None)

    assert isinstance(decision.signal, Failure)
    assert decision.signal.error == "Job.Failed"
    assert "'States.Timeout'" in json.loads(decision.signal.cause)["message"]


def test_declared_cause_is_capped() -> None:
    decision = decide(end(exit_code=1, result=json.dumps({"error": "A.B", "cause": "x" * 40_000})), JOB, None)

    assert isinstance(decision.signal, Failure)
    assert len(decision.signal.cause) == MAX_CAUSE_CHARS


def test_output_too_large_without_a_bucket_fails_with_its_own_name() -> None:
    decision = decide(end(stdout_line=json.dumps({"x": "a" * MAX_OUTPUT_BYTES})), JOB, None)

    assert isinstance(decision.signal, Failure)
    assert (decision.signal.error, decision.exit_code, decision.store) == ("Job.OutputTooLarge", 1, None)
    assert json.loads(decision.signal.cause)["message"] == (
        f"the job's output is {MAX_OUTPUT_BYTES + OVERHEAD} bytes; Step Functions accepts at most {MAX_OUTPUT_BYTES} "
        "and no OUTPUT_BUCKET is set for larger outputs"
    )


def test_large_output_with_a_bucket_is_stored_and_the_task_gets_the_pointer() -> None:
    output = {"x": "a" * MAX_OUTPUT_BYTES}

    decision = decide(end(result=json.dumps({"output": output})), WITH_BUCKET, None)

    assert decision.store is not None
    assert decision.store.body == json.dumps(output, separators=(",", ":")).encode()
    assert decision == Decision(decision.store.pointer(), 0, store=decision.store)


def test_a_failed_job_stores_nothing_whatever_its_output() -> None:
    decision = decide(end(exit_code=2, result=json.dumps({"output": {"x": "a" * MAX_OUTPUT_BYTES}})), WITH_BUCKET, None)

    assert isinstance(decision.signal, Failure)
    assert (decision.signal.error, decision.store) == ("Job.Failed", None)


def test_output_cut_at_the_capture_cap_is_too_large_even_with_a_bucket() -> None:
    cut = Captured(b'{"output": {"x": "cut', CAPTURE_CAP_BYTES + 1)

    decision = decide(JobEnd(0, cut, Captured(), "tail"), WITH_BUCKET, None)

    assert isinstance(decision.signal, Failure)
    assert decision.signal.error == "Job.OutputTooLarge"
    assert json.loads(decision.signal.cause)["message"] == (
        f"the job's output is {CAPTURE_CAP_BYTES + 1} bytes; at most {MAX_STORED_OUTPUT_BYTES} are written to "
        f"s3://{BUCKET}/ (over {MAX_OUTPUT_BYTES})"
    )


def test_an_output_that_could_not_be_stored_is_job_failed_saying_why() -> None:
    stored = StoredOutput(BUCKET, f"outputs/{JOB_ID}.json", b"{}" * 200_000)

    decision = output_not_stored(stored, end(tail="job log"), JOB, "AccessDenied: Access Denied")

    assert decision == Decision(
        Failure(
            "Job.Failed",
            build_cause(
                JOB,
                0,
                "job log",
                f"the job's output (400000 bytes) could not be written to {stored.uri}: AccessDenied: Access Denied",
            ),
        ),
        1,
    )


def test_broken_result_is_job_failed_with_a_message() -> None:
    decision = decide(end(result="garbage"), JOB, None)

    assert isinstance(decision.signal, Failure)
    assert decision.signal.error == "Job.Failed"
    assert json.loads(decision.signal.cause)["message"].startswith("the job's result is not JSON")


def test_closed_task_sends_nothing_and_exits_143() -> None:
    assert decide(end(result='{"output": {}}'), JOB, StopReason.TASK_CLOSED) == Decision(None, 143)


def test_terminated_job_is_left_to_whoever_stopped_it_and_exits_143() -> None:
    assert decide(end(exit_code=143, tail="bye"), JOB, StopReason.TERMINATED) == Decision(None, 143)


def test_sigkill_not_sent_by_the_wrapper_is_left_to_the_host_guard() -> None:
    assert decide(end(exit_code=137), JOB, None) == Decision(None, 137)
