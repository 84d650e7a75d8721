#!/bin/bash
# A bare `docker run` of the worker image: the job's code as the container's command, and nothing
# of ours around it (no job record, no limits, no host guard, no callback wrapper). It is the
# script of the polling fixture's SSM document, where the job's stdout becomes the command's
# output as a polling design reads it, and the baseline of `python -m bench host-overhead`.
#
# Parameters (SSM document parameters with interpolationType ENV_VAR, or set by the caller):
#   SSM_Image  the image; SSM_Code  Python code run by `python3 -c`; SSM_Input  the job's input
#   (JSON, mounted read-only at /job/input.json as the host side does); SSM_RunId  a label value
#   that lets `docker events` tell this container from any other.
set -euo pipefail
# shellcheck disable=SC2154  # SSM (or the caller) sets SSM_*; `set -u` refuses a missing one
{
  image="$SSM_Image"
  code="$SSM_Code"
  input="$SSM_Input"
  run_id="$SSM_RunId"
}
dir="$(mktemp -d)"
trap 'rm -rf -- "$dir"' EXIT
chmod 0755 "$dir"
printf '%s' "$input" >"$dir/input.json"
chmod 0644 "$dir/input.json"
# Same user and network as the host side gives a job, so only what the host side adds differs.
docker run --rm --network host --user 1000:1000 --label "run-job.bench-run=$run_id" \
  -v "$dir/input.json:/job/input.json:ro" --env JOB_INPUT_PATH=/job/input.json \
  --entrypoint python3 "$image" -c "$code"
