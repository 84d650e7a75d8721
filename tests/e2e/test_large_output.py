"""A job output over Step Functions' 256 KiB, end to end on the local stack: the worker
container writes it to the stack's output bucket and the execution's output points to it."""

from __future__ import annotations

import hashlib
import json

from local_stack.client import LocalStackClient

MAX_OUTPUT_BYTES = 256 * 1024  # Step Functions' payload limit


def compact(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def test_output_over_256_kib_is_in_the_output_bucket_and_the_execution_output_points_to_it(
    stack: LocalStackClient,
) -> None:
    job_input = {"outputBytes": 300 * 1024}
    outcome = stack.run({"jobType": "checksum", "input": job_input})
    assert outcome.status == "SUCCEEDED", outcome

    (job_id,) = stack.job_ids(outcome.execution_arn)
    bucket, key = stack.state["output_bucket"], f"outputs/{job_id}.json"
    assert stack.job(job_id)["env"]["M"]["OUTPUT_BUCKET"] == {"S": bucket}  # dispatch told the job
    body = stack.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    assert outcome.output == {
        "outputLocation": {"bucket": bucket, "key": key, "uri": f"s3://{bucket}/{key}"},
        "bytes": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
    }
    # The object is the output the job returned, as compact JSON: what the execution would
    # have received had it fitted.
    digest = {"sha256": hashlib.sha256(compact(job_input)).hexdigest(), "bytes": len(compact(job_input))}
    expected = {"input": digest, "file": digest, "heldMiB": 0, "filler": "x" * job_input["outputBytes"]}
    assert body == compact(expected)
    assert len(body) > MAX_OUTPUT_BYTES
