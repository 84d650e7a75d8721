#!/bin/bash
# The stop-container document's script: stop one job's container (SIGTERM, the grace, then
# SIGKILL) and remove it. Idempotent: a job without a container here is a success.
#
# SSM runs this text as one script file (aws:runShellScript); it must not look for sibling files.
# Parameters arrive as SSM_JobId and SSM_GraceSeconds (interpolationType ENV_VAR) and are
# checked again here. Only containers labelled run-job.job-id=<JobId> (the run-container
# document's) are touched; the run-container script still running for the job then sees its
# container end, signals the (normally already closed) task and cleans up after itself.
#
# Exit status: 0 stopped and removed, or nothing to stop; 1 docker failed; 2 a parameter does not
# match its pattern (nothing was done).
if [ -z "${BASH_VERSION:-}" ]; then
  echo "stop-job: error: this script needs bash" >&2
  exit 2
fi
set -euo pipefail

log() { printf 'stop-job: %s\n' "$*"; }
fail() { printf 'stop-job: error: %s\n' "$*" >&2; }

matches() {  # VALUE PATTERN: an extended regex match with C locale ranges
  local LC_ALL=C
  [[ $1 =~ $2 ]]
}

check_parameter() {  # NAME PATTERN: SSM_<NAME> must be set and match PATTERN
  local variable="SSM_$1"
  if [[ ! -v $variable ]]; then
    fail "parameter $1 is missing (\$$variable is not set)"
    return 1
  fi
  if ! matches "${!variable}" "$2"; then
    fail "parameter $1 must match $2; refused"
    return 1
  fi
}

parameters_ok=true
check_parameter JobId '^job-[0-9a-f]{32}$' || parameters_ok=false
check_parameter GraceSeconds '^[0-9]{1,4}$' || parameters_ok=false
if [[ $parameters_ok != true ]]; then
  exit 2
fi
# shellcheck disable=SC2154  # SSM sets SSM_* (interpolationType ENV_VAR); checked just above
{
  job_id="$SSM_JobId"
  grace="$((10#$SSM_GraceSeconds))"
}
export HOME="${HOME:-/root}"

if ! type -P docker >/dev/null; then
  fail "docker is not installed (or not on PATH)"
  exit 1
fi

if ! answer="$(docker ps --all --quiet --no-trunc --filter "label=run-job.job-id=$job_id" 2>&1)"; then
  fail "docker ps failed: $answer"
  exit 1
fi
found=0
while IFS= read -r line; do  # container ids only: a warning on stderr is not a container
  if matches "$line" '^[0-9a-f]{64}$'; then
    found=$((found + 1))
  fi
done <<<"$answer"
if ((found == 0)); then
  log "no container for job $job_id: nothing to stop"
  exit 0
fi

if answer="$(docker stop --time "$grace" "$job_id" 2>&1)"; then
  log "stopped container $job_id (grace ${grace}s)"
elif [[ $answer == *"No such container"* ]]; then
  log "container $job_id is gone already"
  exit 0
else
  fail "docker stop failed: $answer"
fi
if answer="$(docker rm --force "$job_id" 2>&1)" || [[ $answer == *"No such container"* ]]; then
  log "removed container $job_id"
else
  fail "docker rm failed: $answer"
  exit 1
fi
