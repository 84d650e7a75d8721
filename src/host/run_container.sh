#!/bin/bash
# The run-container document's script: the host side of one job (docs/design.md, "Host side").
#
# SSM runs this text as one script file (aws:runShellScript); it must not look for sibling files.
# Parameters arrive as SSM_JobId, SSM_JobTable, SSM_Region, SSM_PullPolicy, SSM_Network,
# SSM_LogDriver, SSM_LogGroup, SSM_PruneDiskPercent and SSM_PruneAgeHours (interpolationType
# ENV_VAR) and are checked again here.
# RUN_JOB_ROOT (default /var/lib/run-job) holds the job directories; RUN_JOB_RETRY_DELAY
# (seconds, default 2) spaces the retries of AWS calls.
#
# The task token is a secret: it is read from the job record into 0600 files of a 0700 job
# directory, reaches `docker run` only through its environment (`--env TASK_TOKEN`), and reaches
# Step Functions only through `--cli-input-json file://...`. It is never on any command line and
# never printed; logs show the token hash. The job type's secrets (references in the record) are
# read here, when the job starts, into 0600 files, and reach the container the same way as the
# token: the docker CLI's environment. Their values are redacted from the log tails we send.
#
# Exit status (of the host side, not of the job; the job's outcome goes to Step Functions):
#   0  the job's outcome was signalled, or the task was already closed (the callback wrapper
#      signalled first); this includes jobs the host guard failed (pull failed, bad record, ...)
#   1  the host side could not work (a tool missing, the job record unreadable or without token)
#   2  a parameter does not match its pattern: nothing was done
#   3  the job record does not exist: nothing to run, no token to signal
#   4  the job directory exists already: another run of this job owns it
#   5  the outcome could not be signalled to Step Functions (after retries)
#   130/143  interrupted by SIGINT/SIGTERM (the container was stopped and removed)
if [ -z "${BASH_VERSION:-}" ]; then
  echo "run-job: error: this script needs bash" >&2
  exit 2
fi
set -euo pipefail
umask 077

log() { printf 'run-job: %s\n' "$*"; }
fail() { printf 'run-job: error: %s\n' "$*" >&2; }

# The JSON work (job record, signals, container state) in one python3 program, fed on stdin.
# Python 3.9 compatible (Amazon Linux 2023). Files only: secrets never pass through argv.
jobpy() {
  python3 -I - "$@" <<'PY'
import hashlib
import json
import os
import re
import sys
from decimal import Decimal, InvalidOperation

# Same rules as the job type catalog (src/dispatch/catalog.py), checked again on the host.
IMAGE_REF = re.compile(
    r"[a-z0-9][a-z0-9._-]*(:[0-9]{1,5})?(/[a-z0-9][a-z0-9._-]*)*"
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[0-9a-f]{64})?"
)
ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,127}")
SECRET_REF = re.compile(
    r"arn:aws[a-z-]*:secretsmanager:[a-z]{2}(-[a-z]+)+-[0-9]:[0-9]{12}:secret:[A-Za-z0-9/_+=.@-]{1,512}"
    r"|ssm:(/[A-Za-z0-9_.-]{1,1011})+"
)
RESERVED_ENV = {
    "TASK_TOKEN", "JOB_ID", "JOB_INPUT_PATH", "JOB_OUTPUT_DIR", "HEARTBEAT_SECONDS", "JOB_LOG_GROUP",
    "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
}
# The values are exported to the docker CLI itself: names that steer it are refused too.
RESERVED_PREFIXES = ("DOCKER_", "LD_")
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
CAUSE_LIMIT = 32768  # Step Functions' cause limit, kept in UTF-8 bytes (the strictest reading)
TAIL_READ = 262144
REDACTED = "[task token redacted]"
SECRET_REDACTED = "[secret redacted]"
# Shorter secret values are not redacted from log tails: they would shred ordinary text.
REDACT_MIN_CHARS = 6
CONTAINER_UID = 1000


class Refused(Exception):
    """The job record cannot be run as it is; the message says which field and why."""


def err(message):
    sys.stderr.write("run-job: error: " + message + "\n")


def write_new(path, data, mode):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, mode)


def nul_joined(values):
    return b"".join(value.encode("utf-8") + b"\0" for value in values)


def nul_split(path):
    """The strings of a NUL-joined file; none if it does not exist."""
    try:
        with open(path, "rb") as handle:
            return [part.decode("utf-8") for part in handle.read().split(b"\0")[:-1]]
    except FileNotFoundError:
        return []


def attr(item, name, kind, default=None, required=True):
    if name not in item:
        if required:
            raise Refused("job record: " + name + " is missing")
        return default
    value = item[name]
    if not isinstance(value, dict) or kind not in value:
        raise Refused("job record: " + name + " must be of DynamoDB type " + kind)
    return value[kind]


def text(value, where):
    if not isinstance(value, str) or "\0" in value:
        raise Refused("job record: " + where + " must be a string without NUL")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise Refused("job record: " + where + " is not valid UTF-8 text") from None
    return value


def number(item, name, low, high, integral, default=None):
    raw = attr(item, name, "N", default=None, required=default is None)
    if raw is None:
        return default
    kind = "an integer" if integral else "a number"
    problem = "job record: " + name + " must be " + kind + " from " + str(low) + " to " + str(high)
    try:
        value = Decimal(str(raw))
    except (InvalidOperation, ValueError):
        raise Refused(problem) from None
    if not value.is_finite() or not Decimal(low) <= value <= Decimal(high):
        raise Refused(problem)
    if integral:
        if value != value.to_integral_value():
            raise Refused(problem)
        return str(int(value))
    return format(value.normalize(), "f")


def read_record(record_path):
    """The get-item output's Item, None when the record does not exist."""
    with open(record_path, "rb") as handle:
        raw = handle.read()
    if not raw.strip():
        return None  # the CLI prints nothing for a missing item
    doc = json.loads(raw.decode("utf-8"))
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    item = doc.get("Item")
    if item is not None and not isinstance(item, dict):
        raise ValueError("Item is not an object")
    return item or None


def extract(record_path, job_dir, job_id):
    """Job record -> files of the job directory. 0 ok, 3 missing, 4 unreadable, 5 no token, 10 refused."""
    try:
        item = read_record(record_path)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        err("the get-item output is not a job record: " + type(exc).__name__)
        return 4
    if item is None:
        return 3
    token = item.get("token")
    token = token.get("S") if isinstance(token, dict) else None
    if not isinstance(token, str) or not 0 < len(token) <= 8192 or "\0" in token:
        err("job record " + job_id + " has no usable token: nothing can be signalled")
        return 5
    write_new(os.path.join(job_dir, "token"), token.encode("utf-8"), 0o600)
    fields = {
        "tokenHash": token_hash(token),
        "stopGraceSeconds": "30",
    }
    try:
        fields["stopGraceSeconds"] = number(item, "stopGraceSeconds", 0, 86400, True, default="30")
        if attr(item, "jobId", "S") != job_id:
            raise Refused("job record: jobId does not match the command's JobId")
        job_type = attr(item, "jobType", "S", default="", required=False)
        fields["jobType"] = job_type if re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", str(job_type)) else "?"
        image = attr(item, "image", "S")
        if not isinstance(image, str) or len(image) > 512 or not IMAGE_REF.fullmatch(image):
            raise Refused("job record: image must be an image reference (repo/name:tag or "
                          "repo/name@sha256:<64 hex>), without a leading '-', spaces or quotes")
        fields["image"] = image
        command = attr(item, "command", "L", default=[], required=False)
        if not isinstance(command, list):
            raise Refused("job record: command must be a list of strings")
        argv = []
        for index, element in enumerate(command):
            where = "command[" + str(index) + "]"
            if not isinstance(element, dict) or "S" not in element:
                raise Refused("job record: " + where + " must be of DynamoDB type S")
            argv.append(text(element["S"], where))
        env = attr(item, "env", "M", default={}, required=False)
        if not isinstance(env, dict):
            raise Refused("job record: env must be a map of strings")
        pairs = []
        for name in sorted(env):
            shown = repr(name[:64])
            if not ENV_NAME.fullmatch(name):
                raise Refused("job record: env name " + shown + " must match ^[A-Z_][A-Z0-9_]*$")
            if name in RESERVED_ENV or name.startswith(RESERVED_PREFIXES):
                raise Refused("job record: env name " + shown + " is reserved for the host side")
            value = env[name]
            if not isinstance(value, dict) or "S" not in value:
                raise Refused("job record: env " + shown + " must be of DynamoDB type S")
            pairs += [name, text(value["S"], "env " + shown)]
        secrets = attr(item, "secrets", "M", default={}, required=False)
        if not isinstance(secrets, dict):
            raise Refused("job record: secrets must be a map of secret references")
        refs = []
        for name in sorted(secrets):
            shown = repr(name[:64])
            if not ENV_NAME.fullmatch(name) or name in RESERVED_ENV or name.startswith(RESERVED_PREFIXES):
                raise Refused("job record: secret name " + shown + " is not an allowed variable name")
            if name in env:
                raise Refused("job record: secret name " + shown + " is also in env")
            ref = secrets[name]
            if not isinstance(ref, dict) or not isinstance(ref.get("S"), str) or not SECRET_REF.fullmatch(ref["S"]):
                raise Refused("job record: secret " + shown + " must be a Secrets Manager ARN or ssm:/name")
            refs += [name, ref["S"]]
        fields["cpu"] = number(item, "cpu", Decimal("0.01"), 1024, False)
        fields["memoryMiB"] = number(item, "memoryMiB", 6, 4194304, True)
        fields["pidsLimit"] = number(item, "pidsLimit", 1, 4194304, True)
        fields["heartbeatSeconds"] = number(item, "heartbeatSeconds", 1, 31536000, True)
        read_only = attr(item, "readOnlyRootFs", "BOOL", default=False, required=False)
        if not isinstance(read_only, bool):
            raise Refused("job record: readOnlyRootFs must be true or false")
        fields["readOnlyRootFs"] = "true" if read_only else "false"
        data = text(attr(item, "input", "S"), "input").encode("utf-8")
        expected = attr(item, "inputSha256", "S")
        if not isinstance(expected, str) or not SHA256_HEX.fullmatch(expected):
            raise Refused("job record: inputSha256 must be 64 lowercase hex digits")
        input_path = os.path.join(job_dir, "input.json")
        write_new(input_path, data, 0o644)
        with open(input_path, "rb") as handle:
            actual = hashlib.sha256(handle.read()).hexdigest()
        if actual != expected:
            raise Refused("input.json does not match the job record's inputSha256 (expected " + expected
                          + ", the " + str(len(data)) + " bytes written hash to " + actual + ")")
        out_dir = os.path.join(job_dir, "out")
        os.mkdir(out_dir, 0o700)
        os.chown(out_dir, CONTAINER_UID, CONTAINER_UID)
        write_new(os.path.join(job_dir, "command"), nul_joined(argv), 0o600)
        write_new(os.path.join(job_dir, "env"), nul_joined(pairs), 0o600)
        write_new(os.path.join(job_dir, "secret-refs"), nul_joined(refs), 0o600)
    except Refused as exc:
        write_new(os.path.join(job_dir, "refused"), str(exc).encode("utf-8"), 0o600)
        status = 10
    else:
        status = 0
    flat = []
    for key in sorted(fields):
        flat += [key, fields[key]]
    write_new(os.path.join(job_dir, "fields"), nul_joined(flat), 0o600)
    return status


def token_hash(token):
    """What logs show instead of the token (the job table's tokenHash, the wrapper's log)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()[:12]


def read_token(job_dir):
    with open(os.path.join(job_dir, "token"), "rb") as handle:
        return handle.read().decode("utf-8")


def secret_values(job_dir):
    """The values of the job's secrets read so far, longest first."""
    pairs = nul_split(os.path.join(job_dir, "secret-env"))
    values = {value for value in pairs[1::2] if len(value) >= REDACT_MIN_CHARS}
    return sorted(values, key=len, reverse=True)


def read_tail(path, token, secrets=()):
    """The end of a file as text, with the token (if known) and the secrets redacted."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - TAIL_READ))
            raw = handle.read()
    except OSError:
        return ""
    tail = raw.decode("utf-8", errors="replace")
    for value in secrets:
        tail = tail.replace(value, SECRET_REDACTED)
    return tail.replace(token, REDACTED) if token else tail


def read_secret(job_dir, name, kind, answer_path):
    """The value in an aws CLI answer (get-secret-value or get-parameter) -> secret-env. The
    answer file holds the value: it goes at once. 0 read, 10 refused (why on stderr)."""
    try:
        with open(answer_path, "rb") as handle:
            doc = json.loads(handle.read().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        doc = None
    finally:
        if os.path.lexists(answer_path):
            os.unlink(answer_path)
    if kind == "ssm":
        value = doc.get("Parameter", {}).get("Value") if isinstance(doc, dict) else None
    else:
        value = doc.get("SecretString") if isinstance(doc, dict) else None
        if value is None and isinstance(doc, dict) and "SecretBinary" in doc:
            err("secret " + name + " is binary: only text secrets can be environment variables")
            return 10
    if not isinstance(value, str):
        err("secret " + name + ": the answer holds no value")
        return 10
    if "\0" in value:
        err("secret " + name + " holds a NUL character: it cannot be an environment variable")
        return 10
    path = os.path.join(job_dir, "secret-env")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "ab") as handle:
        handle.write(nul_joined([name, value]))
    return 0


def disk_used_percent(path):
    """How full the file system holding `path` is, as df counts it (blocks not free to users)."""
    try:
        stats = os.statvfs(path)
    except OSError:
        print("unknown")
        return 0
    used = (stats.f_blocks - stats.f_bfree) * stats.f_frsize
    usable = used + stats.f_bavail * stats.f_frsize
    print(str(-(-100 * used // usable)) if usable else "unknown")
    return 0


def dumps(value):
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def fit_cause(cause, tail):
    """The cause as JSON text of at most CAUSE_LIMIT UTF-8 bytes, keeping the end of the tail."""
    cause = dict(cause, logTail=tail)
    whole = dumps(cause)
    if len(whole.encode("utf-8")) <= CAUSE_LIMIT:
        return whole
    marker = "[log tail truncated]\n"
    budget = CAUSE_LIMIT - len(dumps(dict(cause, logTail=marker)).encode("utf-8"))
    start = len(tail)
    while start > 0:
        size = len(dumps(tail[start - 1])[1:-1].encode("utf-8"))
        if size > budget:
            break
        budget -= size
        start -= 1
    return dumps(dict(cause, logTail=marker + tail[start:]))


def build_signal(job_dir, job_id, kind, options):
    """Write signal.json (0600): the --cli-input-json of send-task-success/-failure."""
    token = read_token(job_dir)
    if kind == "success":
        doc = {"taskToken": token, "output": dumps({"jobId": job_id, "exitCode": 0})}
    else:
        cause = {"jobId": job_id}
        if "message" in options:
            cause["message"] = options["message"].replace(token, REDACTED)
        if "exit-code" in options:
            code = options["exit-code"]
            cause["exitCode"] = int(code) if re.fullmatch(r"-?[0-9]{1,10}", code) else None
        if "log-file" in options:
            cause_text = fit_cause(cause, read_tail(options["log-file"], token, secret_values(job_dir)))
        else:
            cause_text = dumps(cause)
        doc = {"taskToken": token, "error": kind, "cause": cause_text}
    path = os.path.join(job_dir, "signal.json")
    if os.path.lexists(path):
        os.unlink(path)
    write_new(path, json.dumps(doc).encode("utf-8"), 0o600)
    return 0


# The callback wrapper's log events once it has signalled or found the task closed
# (worker_image/callback_wrapper/stepfunctions.py, send_signal).
WRAPPER_SIGNALLED = {"signalled success", "signalled failure", "task already closed: signal not needed"}


def wrapper_signalled(job_dir, job_id, log_path):
    """0 when the log's last line is this job's callback wrapper (its job id and token hash)
    saying it signalled or found the task closed; 1 otherwise (the guard must signal)."""
    lines = [line for line in read_tail(log_path, None).splitlines() if line.strip()]
    try:
        record = json.loads(lines[-1])
    except (IndexError, ValueError):
        return 1
    if (
        isinstance(record, dict)
        and record.get("event") in WRAPPER_SIGNALLED
        and record.get("jobId") == job_id
        and record.get("tokenHash") == token_hash(read_token(job_dir))
    ):
        return 0
    return 1


def container_state(inspect_path):
    """'EXITCODE OOMKILLED' from `docker inspect` output; 'unknown false' if it has none."""
    try:
        with open(inspect_path, "rb") as handle:
            doc = json.loads(handle.read().decode("utf-8"))
        state = doc[0]["State"]
        code = state["ExitCode"]
        oom = state.get("OOMKilled") is True
        if isinstance(code, bool) or not isinstance(code, int):
            raise ValueError("ExitCode")
    except (OSError, ValueError, LookupError, TypeError):
        print("unknown false")
        return 0
    print(str(code) + " " + ("true" if oom else "false"))
    return 0


def print_tail(job_dir, path, limit):
    token_path = os.path.join(job_dir, "token")
    token = read_token(job_dir) if os.path.exists(token_path) else None
    tail = read_tail(path, token, secret_values(job_dir))[-int(limit):].strip()
    print(tail if tail else "(no output)")
    return 0


def main(argv):
    command = argv[0]
    if command == "extract":
        return extract(argv[1], argv[2], argv[3])
    if command == "signal":
        options = {}
        for arg in argv[4:]:
            key, _, value = arg.partition("=")
            options[key] = value
        return build_signal(argv[1], argv[2], argv[3], options)
    if command == "state":
        return container_state(argv[1])
    if command == "signalled":
        return wrapper_signalled(argv[1], argv[2], argv[3])
    if command == "tail":
        return print_tail(argv[1], argv[2], argv[3])
    if command == "secret":
        return read_secret(argv[1], argv[2], argv[3], argv[4])
    if command == "disk":
        return disk_used_percent(argv[1])
    err("jobpy: unknown command " + command)
    return 1


sys.exit(main(sys.argv[1:]))
PY
}

# --- 1. parameters ---------------------------------------------------------------------------
matches() {  # VALUE PATTERN: an extended regex match with C locale ranges ([a-z] is ASCII only)
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
check_parameter JobTable '^[A-Za-z0-9_.-]{3,255}$' || parameters_ok=false
check_parameter Region '^[a-z]{2}(-[a-z]+)+-[0-9]$' || parameters_ok=false
check_parameter PullPolicy '^(always|missing)$' || parameters_ok=false
check_parameter Network '^(bridge|host|none)$' || parameters_ok=false
check_parameter LogDriver '^(awslogs|json-file|local)$' || parameters_ok=false
check_parameter LogGroup '^[A-Za-z0-9_./#-]{1,512}$' || parameters_ok=false
check_parameter PruneDiskPercent '^([1-9][0-9]?|100|off)$' || parameters_ok=false
check_parameter PruneAgeHours '^[0-9]{1,5}$' || parameters_ok=false
job_root="${RUN_JOB_ROOT:-/var/lib/run-job}"
if ! matches "$job_root" '^/[A-Za-z0-9_./-]*$'; then
  fail "RUN_JOB_ROOT must be an absolute path of letters, digits and _ . / -; refused"
  parameters_ok=false
fi
if [[ $parameters_ok != true ]]; then
  exit 2
fi

# shellcheck disable=SC2154  # SSM sets SSM_* (interpolationType ENV_VAR); checked just above
{
  job_id="$SSM_JobId"
  table="$SSM_JobTable"
  region="$SSM_Region"
  pull_policy="$SSM_PullPolicy"
  network="$SSM_Network"
  log_driver="$SSM_LogDriver"
  log_group="$SSM_LogGroup"
  prune_disk_percent="$SSM_PruneDiskPercent"
  prune_age_hours="$((10#$SSM_PruneAgeHours))"
}
job_dir="$job_root/jobs/$job_id"
retry_delay="${RUN_JOB_RETRY_DELAY:-2}"
if ! matches "$retry_delay" '^[0-9]{1,3}$'; then
  retry_delay=2
fi
# SSM may start us without HOME; the docker CLI keeps registry logins under it, the aws CLI its config.
export HOME="${HOME:-/root}"
export AWS_PAGER=""

for tool in docker aws python3; do
  if ! type -P "$tool" >/dev/null; then
    fail "$tool is not installed (or not on PATH)"
    exit 1
  fi
done
docker_bin="$(type -P docker)"

# --- state shared with the traps --------------------------------------------------------------
owns_job_dir=false
interrupted=false
container_may_exist=false
outcome_sent=false
token_ready=false
bg_pid=""
stop_grace=30
exit_status=0

# shellcheck disable=SC2329  # invoked by the EXIT trap
cleanup() {  # trap EXIT: the container and the job directory go, whatever happened
  local status=$?
  set +e
  exec 1>&3 2>&4
  if [[ -n $bg_pid ]]; then
    kill -TERM "$bg_pid" 2>/dev/null
    wait "$bg_pid" 2>/dev/null
  fi
  if [[ $container_may_exist == true ]]; then
    if docker rm --force "$job_id" >/dev/null 2>&1; then
      log "removed container $job_id"
    else
      fail "could not remove container $job_id"
    fi
  fi
  if [[ $owns_job_dir == true ]]; then
    rm -rf -- "$job_dir"
    if [[ $interrupted != true ]]; then
      upkeep
    fi
  fi
  exit "$status"
}

# shellcheck disable=SC2329  # invoked by the TERM and INT traps
on_signal() {  # trap TERM/INT (SSM cancel or executionTimeout, an operator): stop, tell, clean up
  local name=$1 code=$2
  trap '' TERM INT
  interrupted=true # stopped: leave at once, no upkeep
  exec 1>&3 2>&4 # the trap may run inside a redirected command: back to the script's own output
  log "received SIG$name: stopping the job"
  if [[ -n $bg_pid ]]; then
    kill -TERM "$bg_pid" 2>/dev/null || true
    wait "$bg_pid" 2>/dev/null || true
    bg_pid=""
  fi
  if [[ $container_may_exist == true ]]; then
    docker stop --time "$stop_grace" "$job_id" >/dev/null 2>&1 || true
    log "stopped container $job_id (grace ${stop_grace}s)"
    if [[ $token_ready == true && $outcome_sent != true ]]; then
      collect_outcome
      guard Job.Cancelled "message=the host side was interrupted (SIG$name): container stopped" \
        "exit-code=$exit_code" "log-file=$job_dir/logs.txt" || true
    fi
  elif [[ $token_ready == true && $outcome_sent != true ]]; then
    guard Job.Cancelled "message=the host side was interrupted (SIG$name) before the container started" || true
  fi
  exit "$code"
}

run_interruptible() {  # a long command in the background, so that TERM/INT traps run at once
  local status=0
  "$@" &
  bg_pid=$!
  wait "$bg_pid" || status=$?
  bg_pid=""
  return "$status"
}

retry_sleep() {  # ATTEMPT
  sleep "$((retry_delay * $1))"
}

# guard OUTCOME [key=value...]: signal Step Functions (success, or the error name OUTCOME).
# An answer that the task is already closed means the callback wrapper signalled first.
guard() {
  local outcome=$1 api attempt answer
  shift
  if [[ $outcome == success ]]; then
    api=send-task-success
  else
    api=send-task-failure
  fi
  if ! jobpy signal "$job_dir" "$job_id" "$outcome" "$@"; then
    fail "could not write the $outcome signal"
    exit_status=5
    return 1
  fi
  for attempt in 1 2 3 4 5; do
    if aws stepfunctions "$api" --region "$region" --cli-input-json "file://$job_dir/signal.json" \
      >"$job_dir/signal.out" 2>&1; then
      outcome_sent=true
      log "signalled $outcome"
      return 0
    fi
    answer="$(<"$job_dir/signal.out")"
    if [[ $answer =~ \((TaskTimedOut|InvalidToken|TaskDoesNotExist)\) ]]; then
      outcome_sent=true
      log "task already closed (${BASH_REMATCH[1]}): callback wrapper signalled first"
      return 0
    fi
    if ((attempt < 5)); then
      retry_sleep "$attempt"
    fi
  done
  fail "could not signal $outcome: $(jobpy tail "$job_dir" "$job_dir/signal.out" 600)"
  exit_status=5
  return 1
}

exit_code=unknown
oom=false
collect_outcome() {  # exit code, OOM flag and log tail of the finished container
  local state waited=""
  if [[ -s $job_dir/wait.out ]]; then
    waited="$(<"$job_dir/wait.out")"
  fi
  docker inspect --type container "$job_id" >"$job_dir/inspect.json" 2>/dev/null || true
  state="$(jobpy state "$job_dir/inspect.json")"
  exit_code="${state% *}"
  oom="${state#* }"
  if [[ $exit_code == unknown ]] && matches "$waited" '^[0-9]+$'; then
    exit_code="$waited"
  fi
  if ! docker logs --tail 200 "$job_id" >"$job_dir/logs.txt" 2>&1; then
    printf '\n(docker logs failed: the log tail may be incomplete)\n' >>"$job_dir/logs.txt"
  fi
}

# shellcheck disable=SC2329  # invoked through run_interruptible
ecr_login() {  # REGISTRY REGION
  aws ecr get-login-password --region "$2" | docker login --username AWS --password-stdin "$1"
}

# shellcheck disable=SC2329  # invoked by the EXIT trap
upkeep() {  # after the job: prune unused images when Docker's disk is full enough (never fails the job)
  local line root="" used
  if [[ $prune_disk_percent == off ]]; then
    return 0
  fi
  # The text output: a Go template would need braces, which SSM would take for a parameter.
  while IFS= read -r line; do
    if [[ $line =~ ^[[:space:]]*Docker\ Root\ Dir:\ (/.*)$ ]]; then
      root="${BASH_REMATCH[1]}"
    fi
  done < <(docker info 2>/dev/null || true)
  used="$(jobpy disk "${root:-/nonexistent}")"
  if ! matches "$used" '^[0-9]+$'; then
    log "upkeep: cannot tell how full Docker's disk is (root ${root:-unknown}): no prune"
    return 0
  fi
  if ((used < prune_disk_percent)); then
    return 0
  fi
  log "upkeep: Docker's disk is ${used}% full (threshold ${prune_disk_percent}%): pruning unused images older than ${prune_age_hours}h"
  local out="$job_root/prune-$job_id.out" # jobs end side by side: one file each
  if run_interruptible docker image prune --all --force --filter "until=${prune_age_hours}h" >"$out" 2>&1; then
    log "upkeep: $(jobpy tail "$job_root" "$out" 200)"
  else
    log "upkeep: the prune failed (another may be running): $(jobpy tail "$job_root" "$out" 200)"
  fi
  rm -f -- "$out"
}

fetch_secret() {  # NAME REF: the secret's value appended to secret-env (0600); 0 read, 1 aws failed, 10 refused
  local name=$1 ref=$2 attempt kind
  local -a call
  if [[ $ref == ssm:* ]]; then
    kind=ssm
    call=(ssm get-parameter --region "$region" --name "${ref#ssm:}" --with-decryption --output json)
  else
    kind=secretsmanager
    matches "$ref" '^arn:[^:]+:secretsmanager:([^:]+):'
    call=(secretsmanager get-secret-value --region "${BASH_REMATCH[1]}" --secret-id "$ref" --output json)
  fi
  for attempt in 1 2 3; do
    if aws "${call[@]}" >"$job_dir/secret.json" 2>"$job_dir/secret.err"; then
      jobpy secret "$job_dir" "$name" "$kind" "$job_dir/secret.json" 2>"$job_dir/secret.err" || return 10
      return 0
    fi
    rm -f -- "$job_dir/secret.json"
    if ((attempt < 3)); then
      retry_sleep "$attempt"
    fi
  done
  return 1
}

exec 3>&1 4>&2 # the script's own stdout/stderr, for the traps
trap cleanup EXIT
trap 'on_signal TERM 143' TERM
trap 'on_signal INT 130' INT

log "job $job_id: table $table in $region (pull $pull_policy, network $network, log driver $log_driver)"

# The job directory: claimed atomically, so a second run of the same job on this host is refused.
mkdir -p -- "$job_root/jobs"
if ! mkdir -m 0700 -- "$job_dir" 2>/dev/null; then
  if [[ -e $job_dir ]]; then
    fail "job directory $job_dir exists: another run of $job_id owns it; refused"
    exit 4
  fi
  fail "cannot create the job directory $job_dir"
  exit 1
fi
owns_job_dir=true

# --- 2. the job record ------------------------------------------------------------------------
key="{\"jobId\":{\"S\":\"$job_id\"}}"
got_record=false
for attempt in 1 2 3; do
  if aws dynamodb get-item --region "$region" --table-name "$table" --key "$key" --consistent-read \
    --output json >"$job_dir/record.json" 2>"$job_dir/get-item.err"; then
    got_record=true
    break
  fi
  if ((attempt < 3)); then
    retry_sleep "$attempt"
  fi
done
if [[ $got_record != true ]]; then
  fail "get-item of $job_id in $table failed: $(jobpy tail "$job_dir" "$job_dir/get-item.err" 600)"
  exit 1
fi

# --- 3. token, settings and input.json ---------------------------------------------------------
extract_status=0
jobpy extract "$job_dir/record.json" "$job_dir" "$job_id" || extract_status=$?
rm -f -- "$job_dir/record.json"
case "$extract_status" in
  0 | 10) ;;
  3)
    fail "job record $job_id not found in table $table ($region): nothing to run, no task to signal"
    exit 3
    ;;
  *) exit 1 ;;
esac
token_ready=true
declare -A job=()
while IFS= read -r -d '' field && IFS= read -r -d '' value; do
  job[$field]="$value"
done <"$job_dir/fields"
stop_grace="${job[stopGraceSeconds]}"

if [[ $extract_status == 10 ]]; then
  refusal="$(<"$job_dir/refused")"
  fail "$refusal"
  guard Job.Failed "message=the host side refused the job: $refusal" || true
  exit "$exit_status"
fi
image="${job[image]}"
log "read job record: job type ${job[jobType]}, image $image, token hash ${job[tokenHash]}"
mapfile -d '' -t command_args <"$job_dir/command"
mapfile -d '' -t env_pairs <"$job_dir/env"
mapfile -d '' -t secret_refs <"$job_dir/secret-refs"

# --- 3b. the job type's secrets, read on this host now (only their references are recorded) ---
for ((i = 0; i < ${#secret_refs[@]}; i += 2)); do
  fetched=0
  fetch_secret "${secret_refs[i]}" "${secret_refs[i + 1]}" || fetched=$?
  if ((fetched != 0)); then
    why="$(jobpy tail "$job_dir" "$job_dir/secret.err" 600)"
    fail "could not read secret ${secret_refs[i]} (${secret_refs[i + 1]}): $why"
    guard Job.Failed "message=could not read secret ${secret_refs[i]} (${secret_refs[i + 1]}): $why" || true
    exit "$exit_status"
  fi
done
if ((${#secret_refs[@]} > 0)); then
  log "read $((${#secret_refs[@]} / 2)) secret(s) for the container's environment"
fi

# --- 4./5. registry login and pull -------------------------------------------------------------
if [[ $pull_policy == missing ]] && docker image inspect "$image" >/dev/null 2>&1; then
  log "image present, pull skipped (pull policy missing)"
else
  registry="${image%%/*}"
  ecr_host='^[0-9]{12}\.dkr\.ecr(-fips)?\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$'
  pulled=true
  : >"$job_dir/pull.log"
  if [[ $image == */* ]] && matches "$registry" "$ecr_host"; then
    if run_interruptible ecr_login "$registry" "${BASH_REMATCH[2]}" >>"$job_dir/pull.log" 2>&1; then
      log "logged in to $registry"
    else
      pulled=false
      fail "login to $registry failed"
    fi
  fi
  if [[ $pulled == true ]] && ! run_interruptible docker pull "$image" >>"$job_dir/pull.log" 2>&1; then
    pulled=false
  fi
  if [[ $pulled != true ]]; then
    fail "pull of $image failed: $(jobpy tail "$job_dir" "$job_dir/pull.log" 600)"
    guard Job.ImagePullFailed "message=could not pull $image" "log-file=$job_dir/pull.log" || true
    exit "$exit_status"
  fi
  log "pulled $image"
fi

# --- 6. run ------------------------------------------------------------------------------------
run_args=(
  run --detach --init
  --name "$job_id" --label "run-job.job-id=$job_id"
  --user 1000:1000 --cap-drop ALL --security-opt no-new-privileges
  --pids-limit "${job[pidsLimit]}" --cpus "${job[cpu]}"
  --memory "${job[memoryMiB]}m" --memory-swap "${job[memoryMiB]}m"
)
if [[ ${job[readOnlyRootFs]} == true ]]; then
  run_args+=(--read-only --tmpfs /tmp)
fi
run_args+=(--network "$network" --log-driver "$log_driver")
if [[ $log_driver == awslogs ]]; then
  run_args+=(
    --log-opt "awslogs-group=$log_group" --log-opt "awslogs-stream=$job_id"
    --log-opt "awslogs-region=$region"
    --env JOB_LOG_GROUP  # the wrapper names where the full log is in a failure's cause
  )
fi
run_args+=(
  -v "$job_dir/input.json:/job/input.json:ro" -v "$job_dir/out:/job/out"
  --env TASK_TOKEN --env JOB_ID --env JOB_INPUT_PATH --env JOB_OUTPUT_DIR --env HEARTBEAT_SECONDS
  --env AWS_REGION --env AWS_DEFAULT_REGION
)
for name in AWS_ENDPOINT_URL AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY; do
  if [[ -n ${!name:-} ]]; then
    run_args+=(--env "$name")
  fi
done
for ((i = 0; i < ${#env_pairs[@]}; i += 2)); do
  run_args+=(--env "${env_pairs[i]}")
done
for ((i = 0; i < ${#secret_refs[@]}; i += 2)); do
  run_args+=(--env "${secret_refs[i]}")
done
run_args+=("$image" "${command_args[@]}")

start_container() {  # values reach docker only through its environment, never its argv
  local token="" i
  local -a secret_pairs=()
  IFS= read -r -d '' token <"$job_dir/token" || true
  if [[ -e $job_dir/secret-env ]]; then
    mapfile -d '' -t secret_pairs <"$job_dir/secret-env"
  fi
  (
    for ((i = 0; i < ${#env_pairs[@]}; i += 2)); do
      if ! matches "${env_pairs[i]}" '^[A-Z_][A-Z0-9_]*$'; then
        exit 125
      fi
      export "${env_pairs[i]}=${env_pairs[i + 1]}"
    done
    for ((i = 0; i < ${#secret_pairs[@]}; i += 2)); do
      if ! matches "${secret_pairs[i]}" '^[A-Z_][A-Z0-9_]*$'; then
        exit 125
      fi
      export "${secret_pairs[i]}=${secret_pairs[i + 1]}"
    done
    export TASK_TOKEN="$token" JOB_ID="$job_id" JOB_INPUT_PATH=/job/input.json JOB_OUTPUT_DIR=/job/out \
      HEARTBEAT_SECONDS="${job[heartbeatSeconds]}" AWS_REGION="$region" AWS_DEFAULT_REGION="$region" \
      JOB_LOG_GROUP="$log_group"
    exec "$docker_bin" "${run_args[@]}"
  )
}

container_may_exist=true
if ! start_container >"$job_dir/run.out" 2>"$job_dir/run.err"; then
  fail "docker run failed: $(jobpy tail "$job_dir" "$job_dir/run.err" 600)"
  guard Job.Failed "message=docker run failed: the container did not start" "log-file=$job_dir/run.err" || true
  exit "$exit_status"
fi
log "started container $job_id"

# --- 7. wait, then the host guard --------------------------------------------------------------
if ! run_interruptible docker wait "$job_id" >"$job_dir/wait.out" 2>"$job_dir/wait.err"; then
  fail "docker wait failed: $(jobpy tail "$job_dir" "$job_dir/wait.err" 300)"
fi
collect_outcome
log "container exited code=$exit_code oom=$oom"
if jobpy signalled "$job_dir" "$job_id" "$job_dir/logs.txt"; then
  # A second signal would only be refused as "task closed", after an aws CLI start of ~2 s.
  outcome_sent=true
  log "the callback wrapper signalled: nothing to send"
elif [[ $exit_code == 0 ]]; then
  guard success || true
elif [[ $oom == true ]]; then
  guard Job.OutOfMemory "exit-code=$exit_code" "log-file=$job_dir/logs.txt" || true
elif [[ $exit_code == 143 ]]; then
  # Stopped by SIGTERM (docker stop on this host): the callback wrapper leaves the signal to us.
  guard Job.Cancelled "exit-code=$exit_code" "message=the container was stopped (SIGTERM)" \
    "log-file=$job_dir/logs.txt" || true
else
  guard Job.Failed "exit-code=$exit_code" "log-file=$job_dir/logs.txt" || true
fi
# --- 8. the EXIT trap removes the container and the job directory ------------------------------
exit "$exit_status"
