"""run_container.sh: the happy path's docker argv, the host guard's signals, pulls and logins."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import pytest
from host_harness import CAUSE_LIMIT, CLOSED_ANSWERS, IMAGE, JOB_ID, TOKEN, TOKEN_HASH, Host, job_record

COMMAND = ["python3", "-m", "callback_wrapper", "--job", "examples.checksum:run"]


def expected_run_argv(host: Host, *, middle: list[str], env_names: list[str]) -> list[str]:
    job_dir = host.root / "jobs" / JOB_ID
    return [
        "run",
        "--detach",
        "--init",
        "--name",
        JOB_ID,
        "--label",
        f"run-job.job-id={JOB_ID}",
        "--user",
        "1000:1000",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--pids-limit",
        "128",
        "--cpus",
        "0.5",
        "--memory",
        "256m",
        "--memory-swap",
        "256m",
        *middle,
        "-v",
        f"{job_dir}/input.json:/job/input.json:ro",
        "-v",
        f"{job_dir}/out:/job/out",
        *[arg for name in env_names for arg in ("--env", name)],
        IMAGE,
        *COMMAND,
    ]


BASE_ENV = [
    "TASK_TOKEN",
    "JOB_ID",
    "JOB_INPUT_PATH",
    "JOB_OUTPUT_DIR",
    "HEARTBEAT_SECONDS",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
]


@pytest.mark.parametrize(
    ("log_driver", "read_only", "middle"),
    [
        ("json-file", False, ["--network", "host", "--log-driver", "json-file"]),
        ("local", False, ["--network", "host", "--log-driver", "local"]),
        (
            "awslogs",
            False,
            [
                "--network",
                "host",
                "--log-driver",
                "awslogs",
                "--log-opt",
                "awslogs-group=/run-job/jobs",
                "--log-opt",
                f"awslogs-stream={JOB_ID}",
                "--log-opt",
                "awslogs-region=eu-west-1",
                "--env",
                "JOB_LOG_GROUP",
            ],
        ),
        ("json-file", True, ["--read-only", "--tmpfs", "/tmp", "--network", "host", "--log-driver", "json-file"]),
    ],
)
def test_docker_run_argv_is_exactly_the_designed_one(
    host: Host, log_driver: str, read_only: bool, middle: list[str]
) -> None:
    host.scenario["record"] = job_record(readOnlyRootFs=read_only)

    result = host.run(params={"LogDriver": log_driver})

    assert result.rc == 0, result.stderr
    run = [argv for argv in host.argvs() if argv[:2] == ["docker", "run"]]
    assert run == [["docker", *expected_run_argv(host, middle=middle, env_names=[*BASE_ENV, "LOG_LEVEL"])]]


def test_container_environment_values_reach_docker_through_its_environment(host: Host) -> None:
    host.scenario["record"] = job_record(env={"LOG_LEVEL": "DEBUG", "GREETING": "hello world"})

    assert host.run().rc == 0

    assert host.docker_run()["env"] == {
        "TASK_TOKEN": TOKEN,
        "JOB_ID": JOB_ID,
        "JOB_INPUT_PATH": "/job/input.json",
        "JOB_OUTPUT_DIR": "/job/out",
        "HEARTBEAT_SECONDS": "120",
        "AWS_REGION": "eu-west-1",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "GREETING": "hello world",
        "LOG_LEVEL": "DEBUG",
    }


LOCAL_STACK_ENV = {
    "AWS_ENDPOINT_URL": "http://127.0.0.1:5000",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing-secret",
}


@pytest.mark.parametrize(
    ("host_env", "forwarded"),
    [
        ({}, {}),
        (LOCAL_STACK_ENV, LOCAL_STACK_ENV),
        ({"AWS_ENDPOINT_URL": "http://127.0.0.1:5000"}, {"AWS_ENDPOINT_URL": "http://127.0.0.1:5000"}),
        (dict.fromkeys(LOCAL_STACK_ENV, ""), {}),
    ],
)
def test_local_stack_settings_are_forwarded_only_when_set(
    host: Host, host_env: dict[str, str], forwarded: dict[str, str]
) -> None:
    assert host.run(env=host_env).rc == 0

    run = host.docker_run()
    names = [option[1] for option in run["options"] if option[0] == "--env"]
    assert [name for name in names if name in LOCAL_STACK_ENV] == list(forwarded)
    assert {name: run["env"][name] for name in forwarded} == forwarded


def test_exit_zero_sends_task_success(host: Host) -> None:
    result = host.run()

    assert result.rc == 0
    sent = host.signal()
    assert sent["operation"] == "send-task-success"
    assert sent["region"] == "eu-west-1"
    assert sent["file_mode"] == 0o600
    assert sent["payload"]["taskToken"] == TOKEN
    assert json.loads(sent["payload"]["output"]) == {"jobId": JOB_ID, "exitCode": 0}
    assert "run-job: container exited code=0 oom=false" in result.stdout
    assert "run-job: signalled success" in result.stdout


def wrapper_line(event: str = "signalled success", **fields: str) -> str:
    """A log line of the callback wrapper (worker_image/callback_wrapper/jsonlog.py)."""
    record = {"time": "2026-12-01T07:00:00.000+00:00", "level": "info", "event": event}
    return json.dumps({**record, "jobId": JOB_ID, "tokenHash": TOKEN_HASH, **fields}) + "\n"


@pytest.mark.parametrize("exit_code", [0, 3])
@pytest.mark.parametrize("event", ["signalled success", "signalled failure", "task already closed: signal not needed"])
def test_nothing_is_sent_when_the_wrappers_last_line_says_it_signalled(host: Host, exit_code: int, event: str) -> None:
    host.scenario["container"].update(exit_code=exit_code, logs="working\n" + wrapper_line(event) + "\n")

    result = host.run()

    assert result.rc == 0
    assert host.signals() == []
    assert "run-job: the callback wrapper signalled: nothing to send" in result.stdout
    assert [(rm["name"], rm["existed"]) for rm in host.events("rm")] == [(JOB_ID, True)]
    assert host.job_dirs() == []


@pytest.mark.parametrize(
    "logs",
    [
        pytest.param(wrapper_line() + "a line after it\n", id="not-the-last-line"),
        pytest.param(wrapper_line(jobId="job-another"), id="another-job"),
        pytest.param(wrapper_line(tokenHash="0" * 12), id="another-token"),
        pytest.param(wrapper_line("job ended"), id="another-event"),
        pytest.param('{"event": "signalled success"}\n', id="no-job-or-token"),
        pytest.param("signalled success\n", id="not-json"),
        pytest.param("", id="no-output"),
    ],
)
def test_the_guard_signals_unless_this_jobs_wrapper_said_it_did(host: Host, logs: str) -> None:
    host.scenario["container"].update(exit_code=0, logs=logs)

    assert host.run().rc == 0
    assert host.signal()["operation"] == "send-task-success"


@pytest.mark.parametrize("exit_code", [1, 3, 137, 255])
def test_nonzero_exit_is_job_failed_with_exit_code_and_log_tail(host: Host, exit_code: int) -> None:
    host.scenario["container"].update(exit_code=exit_code, logs="step 1\nTraceback: boom\n")

    result = host.run()

    assert result.rc == 0
    sent = host.signal()
    assert sent["operation"] == "send-task-failure"
    assert sent["payload"]["error"] == "Job.Failed"
    assert sent["payload"]["cause"] == {"jobId": JOB_ID, "exitCode": exit_code, "logTail": "step 1\nTraceback: boom\n"}
    assert f"run-job: container exited code={exit_code} oom=false" in result.stdout
    assert "run-job: signalled Job.Failed" in result.stdout


def test_oom_killed_is_job_out_of_memory(host: Host) -> None:
    host.scenario["container"].update(exit_code=137, oom=True, logs="allocating\n")

    result = host.run()

    assert result.rc == 0
    payload = host.signal()["payload"]
    assert payload["error"] == "Job.OutOfMemory"
    assert payload["cause"] == {"jobId": JOB_ID, "exitCode": 137, "logTail": "allocating\n"}
    assert "run-job: container exited code=137 oom=true" in result.stdout


def test_container_stopped_by_sigterm_is_job_cancelled(host: Host) -> None:
    """The callback wrapper leaves a docker stop to the host guard (it does not signal on SIGTERM)."""
    host.scenario["container"].update(exit_code=143, logs="stopping\n")

    assert host.run().rc == 0
    payload = host.signal()["payload"]
    assert payload["error"] == "Job.Cancelled"
    assert payload["cause"]["exitCode"] == 143
    assert payload["cause"]["message"] == "the container was stopped (SIGTERM)"


def test_exit_zero_wins_over_an_oom_flag(host: Host) -> None:
    """docs/design.md step 7 checks exit 0 first: a child killed for memory does not fail a job that exited 0."""
    host.scenario["container"].update(exit_code=0, oom=True)

    assert host.run().rc == 0
    assert host.signal()["operation"] == "send-task-success"


def test_exit_code_comes_from_docker_wait_when_inspect_fails(host: Host) -> None:
    host.scenario["container"].update(exit_code=3, inspect_fails=True)

    assert host.run().rc == 0
    assert host.signal()["payload"]["cause"]["exitCode"] == 3


def test_pull_failure_is_image_pull_failed_with_the_error_tail(host: Host) -> None:
    host.scenario["pull"] = {"rc": 1, "output": "Error response from daemon: manifest for worker:1 not found\n"}

    result = host.run()

    assert result.rc == 0
    payload = host.signal()["payload"]
    assert payload["error"] == "Job.ImagePullFailed"
    assert payload["cause"]["jobId"] == JOB_ID
    assert payload["cause"]["message"] == f"could not pull {IMAGE}"
    assert "manifest for worker:1 not found" in payload["cause"]["logTail"]
    assert host.events("run") == []
    assert "run-job: signalled Job.ImagePullFailed" in result.stdout


@pytest.mark.parametrize(
    ("policy", "present", "pulled"),
    [("always", False, True), ("always", True, True), ("missing", False, True), ("missing", True, False)],
)
def test_pull_policy(host: Host, policy: str, present: bool, pulled: bool) -> None:
    host.scenario["image_present"] = present

    result = host.run(params={"PullPolicy": policy})

    assert result.rc == 0
    assert len(host.events("pull")) == int(pulled)
    assert ("pull skipped" in result.stdout) is not pulled
    assert host.docker_run()["image"] == IMAGE


ECR_IMAGES = [
    ("123456789012.dkr.ecr.us-east-1.amazonaws.com/run-job/worker:1", "us-east-1"),
    ("123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com/worker:1", "us-gov-west-1"),
    ("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/worker@sha256:" + "a" * 64, "cn-north-1"),
]
OTHER_IMAGES = [
    "registry.example.com/worker:1",
    "localhost:5000/worker:1",
    "worker:1",
    "example.com/123456789012.dkr.ecr.us-east-1.amazonaws.com/worker:1",
    "123456789012.dkr.ecr.us-east-1.amazonaws.com.evil.example/worker:1",
    "12345678901.dkr.ecr.us-east-1.amazonaws.com/worker:1",
    "1123456789012.dkr.ecr.us-east-1.amazonaws.com/worker:1",
    "evil.123456789012.dkr.ecr.us-east-1.amazonaws.com/worker:1",
]


@pytest.mark.parametrize(("image", "ecr_region"), ECR_IMAGES + [(image, None) for image in OTHER_IMAGES])
def test_ecr_login_only_for_ecr_images_with_home_set(host: Host, image: str, ecr_region: str | None) -> None:
    host.scenario["record"] = job_record(image=image)

    result = host.run(env={"HOME": None})  # SSM may start the script without HOME

    assert result.rc == 0, result.stderr
    logins = host.events("login")
    if ecr_region is None:
        assert logins == []
        assert host.events("get-login-password") == []
    else:
        registry = image.split("/")[0]
        assert [(login["registry"], login["password_ok"], login["home"]) for login in logins] == [
            (registry, True, "/root")
        ]
        assert host.event("get-login-password")["region"] == ecr_region
        assert f"run-job: logged in to {registry}" in result.stdout
    assert host.event("pull")["home"] == "/root"


def test_home_is_kept_when_set(host: Host) -> None:
    host.scenario["record"] = job_record(image=ECR_IMAGES[0][0])

    assert host.run(env={"HOME": "/home/operator"}).rc == 0
    assert host.event("login")["home"] == "/home/operator"


def test_ecr_login_failure_is_image_pull_failed(host: Host) -> None:
    host.scenario["record"] = job_record(image=ECR_IMAGES[0][0])
    host.scenario["login_rc"] = 1

    assert host.run().rc == 0

    payload = host.signal()["payload"]
    assert payload["error"] == "Job.ImagePullFailed"
    assert "login denied" in payload["cause"]["logTail"]
    assert host.events("pull") == []
    assert host.events("run") == []


@pytest.mark.parametrize("answer", CLOSED_ANSWERS)
@pytest.mark.parametrize("exit_code", [0, 3])
def test_task_already_closed_is_the_normal_case(host: Host, answer: str, exit_code: int) -> None:
    host.scenario["container"]["exit_code"] = exit_code
    host.scenario["signal_answers"] = [answer]

    result = host.run()

    assert result.rc == 0
    assert len(host.signals()) == 1
    assert f"run-job: task already closed ({answer}): callback wrapper signalled first" in result.stdout


def test_a_transient_signal_failure_is_retried(host: Host) -> None:
    host.scenario["signal_answers"] = ["ThrottlingException", "ThrottlingException", "ok"]

    result = host.run()

    assert result.rc == 0
    assert [sent["answer"] for sent in host.signals()] == ["ThrottlingException", "ThrottlingException", "ok"]


def test_an_undeliverable_signal_fails_the_host_side(host: Host) -> None:
    host.scenario["signal_answers"] = ["ServiceUnavailable"]

    result = host.run()

    assert result.rc == 5
    assert len(host.signals()) == 5
    assert "could not signal success" in result.stderr
    assert "ServiceUnavailable" in result.stderr


@pytest.mark.parametrize(
    "logs",
    [
        "x" * 100_000 + "\nTHE END\n",
        "ünïcödé 日本語 🙂\n" * 6_000 + "THE END\n",
        '\x01\x02"\\' * 20_000 + "THE END\n",  # characters JSON escapes to 2 or 6 bytes
    ],
    ids=["ascii", "multibyte", "escaped"],
)
def test_cause_is_capped_at_32768_keeping_the_end_of_the_log(host: Host, logs: str) -> None:
    host.scenario["container"].update(exit_code=1, logs=logs)

    assert host.run().rc == 0

    cause_text = host.event("signal")["payload"]["cause"]
    assert len(cause_text.encode("utf-8")) <= CAUSE_LIMIT
    assert len(cause_text.encode("utf-8")) > CAUSE_LIMIT - 16  # filled, not cut short
    cause = json.loads(cause_text)
    assert cause["exitCode"] == 1
    assert cause["logTail"].startswith("[log tail truncated]\n")
    assert cause["logTail"].endswith("THE END\n")
    assert logs.endswith(cause["logTail"].removeprefix("[log tail truncated]\n"))


def test_token_in_the_log_tail_is_redacted(host: Host) -> None:
    host.scenario["container"].update(exit_code=1, logs=f"env: TASK_TOKEN={TOKEN}\n")

    assert host.run().rc == 0

    sent = host.event("signal")["payload"]
    assert TOKEN not in sent["cause"]
    assert json.loads(sent["cause"])["logTail"] == "env: TASK_TOKEN=[task token redacted]\n"


def test_docker_run_failure_is_job_failed(host: Host) -> None:
    host.scenario["run"] = {"rc": 125, "stderr": "docker: Error response from daemon: invalid mount config.\n"}

    result = host.run()

    assert result.rc == 0
    payload = host.signal()["payload"]
    assert payload["error"] == "Job.Failed"
    assert payload["cause"]["message"] == "docker run failed: the container did not start"
    assert "invalid mount config" in payload["cause"]["logTail"]
    assert host.events("wait") == []


def succeed(scenario: dict[str, Any]) -> None:
    scenario["container"]["exit_code"] = 0


def fail_job(scenario: dict[str, Any]) -> None:
    scenario["container"]["exit_code"] = 2


def oom(scenario: dict[str, Any]) -> None:
    scenario["container"].update(exit_code=137, oom=True)


def run_fails_after_create(scenario: dict[str, Any]) -> None:
    scenario["run"] = {"rc": 125, "stderr": "docker: cannot start container\n", "created": True}


def signal_closed(scenario: dict[str, Any]) -> None:
    scenario["signal_answers"] = ["InvalidToken"]


def signal_undeliverable(scenario: dict[str, Any]) -> None:
    scenario["signal_answers"] = ["InternalFailure"]


@pytest.mark.parametrize(
    "change", [succeed, fail_job, oom, run_fails_after_create, signal_closed, signal_undeliverable]
)
def test_container_and_job_directory_are_removed_in_every_path(
    host: Host, change: Callable[[dict[str, Any]], None]
) -> None:
    change(host.scenario)

    host.run()

    removals = host.events("rm")
    assert [(removal["name"], removal["existed"]) for removal in removals] == [(JOB_ID, True)]
    assert host.events()[-1]["action"] == "rm"  # the signal (if any) went before the cleanup
    assert not host.has_container(JOB_ID)
    assert host.job_dirs() == []


def test_missing_record_exits_3_without_docker_or_signal(host: Host) -> None:
    host.scenario["record"] = None

    result = host.run()

    assert result.rc == 3
    assert f"job record {JOB_ID} not found in table run-job-jobs" in result.stderr
    assert [argv[0] for argv in host.argvs() if argv[0] in ("docker", "aws")] == ["aws"]
    assert host.signals() == []
    assert host.job_dirs() == []


def test_get_item_is_consistent_and_keyed_on_the_job_id(host: Host) -> None:
    assert host.run().rc == 0

    get = host.event("get-item")
    assert (get["region"], get["table"], json.loads(get["key"])) == (
        "eu-west-1",
        "run-job-jobs",
        {"jobId": {"S": JOB_ID}},
    )


@pytest.mark.parametrize(("failures", "rc"), [(2, 0), (3, 1)])
def test_get_item_errors_are_retried(host: Host, failures: int, rc: int) -> None:
    host.scenario["get_item"]["fail_times"] = failures

    result = host.run()

    assert result.rc == rc
    assert len(host.events("get-item")) == min(failures + 1, 3)
    if rc:
        assert "get-item of" in result.stderr
        assert "ProvisionedThroughputExceededException" in result.stderr
        assert host.events("run") == []
        assert host.signals() == []


def test_an_existing_job_directory_is_refused_and_left_alone(host: Host) -> None:
    job_dir = host.root / "jobs" / JOB_ID
    job_dir.mkdir(parents=True)
    (job_dir / "token").write_text("another run's", encoding="utf-8")

    result = host.run()

    assert result.rc == 4
    assert "another run of" in result.stderr
    assert (job_dir / "token").read_text(encoding="utf-8") == "another run's"
    assert [argv[0] for argv in host.argvs() if argv[0] in ("docker", "aws")] == []


def test_input_reaches_input_json_byte_for_byte(host: Host) -> None:
    text = json.dumps({"text": 'ünïcödé 日本語 🙂 \u2028 \\ " \n' * 5_400}, ensure_ascii=False, separators=(",", ":"))
    data = text.encode("utf-8")
    assert len(data) > 200 * 1024
    host.scenario["record"] = job_record(input_text=text)

    assert host.run().rc == 0

    captured = (host.dir / "captured-input.json").read_bytes()
    assert hashlib.sha256(captured).hexdigest() == hashlib.sha256(data).hexdigest()
    assert captured == data


def test_job_files_have_tight_modes(host: Host) -> None:
    assert host.run().rc == 0

    files = host.docker_run()["files"]
    assert files["/job/input.json"]["mode"] == 0o644
    assert files["/job/input.json"]["parent_mode"] == 0o700
    assert (files["/job/out"]["uid"], files["/job/out"]["gid"], files["/job/out"]["mode"]) == (1000, 1000, 0o700)
    listing = files["job_dir"]
    assert "record.json" not in listing  # the raw record (with the token) is gone before docker runs
    assert listing["input.json"] == 0o644
    assert {name: mode for name, mode in listing.items() if name not in ("input.json", "out")} == dict.fromkeys(
        set(listing) - {"input.json", "out"}, 0o600
    )
    assert host.job_dirs() == []


def test_progress_lines_tell_the_story(host: Host) -> None:
    host.scenario["container"]["exit_code"] = 3

    result = host.run()

    lines = [line for line in result.stdout.splitlines() if line.startswith("run-job: ")]
    assert [line.split(":")[1].split()[0] for line in lines] == [
        "job",
        "read",
        "pulled",
        "started",
        "container",
        "signalled",
        "removed",
    ]
