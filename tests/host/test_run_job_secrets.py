"""The job type's secrets (references in the job record) are read on the host when the job
starts and reach the container only through the docker CLI's environment: never on any argv,
never printed, in 0600 files that go with the job directory, redacted from log tails."""

from __future__ import annotations

from typing import Any

import pytest
from host_harness import JOB_ID, TOKEN, Host, Raw, job_record

SM_ARN = "arn:aws:secretsmanager:eu-central-1:123456789012:secret:run-job/secrets/db-password-AbCdEf"
PARAMETER = "ssm:/run-job/secrets/api-key"
# Values a shell or docker's option parser would misread, if they ever got the chance.
DB_PASSWORD = "p@ss w0rd $(reboot) `id` 'x' \"y\" --privileged ünï\nline two"
API_KEY = "api-key-" + "k" * 40
SECRETS = {"DB_PASSWORD": SM_ARN, "API_KEY": PARAMETER}


def with_secrets(host: Host, **changes: Any) -> None:
    host.scenario["record"] = job_record(secrets=SECRETS, **changes)
    host.scenario["secrets"] = {SM_ARN: DB_PASSWORD, PARAMETER: API_KEY}


def test_secrets_reach_the_container_through_dockers_environment_only(host: Host) -> None:
    with_secrets(host)

    result = host.run()

    assert result.rc == 0, result.stderr
    run = host.docker_run()
    assert run["env"]["DB_PASSWORD"] == DB_PASSWORD
    assert run["env"]["API_KEY"] == API_KEY
    names = [option[1] for option in run["options"] if option[0] == "--env"]
    assert names[-2:] == ["API_KEY", "DB_PASSWORD"]  # `--env NAME`: the value stays out of argv
    for argv in host.argvs():
        for element in argv:
            assert DB_PASSWORD not in element, argv[:3]
            assert API_KEY not in element, argv[:3]
    assert DB_PASSWORD not in result.stdout + result.stderr
    assert API_KEY not in result.stdout + result.stderr
    assert "read 2 secret(s)" in result.stdout


def test_each_reference_is_read_from_its_service_and_region(host: Host) -> None:
    with_secrets(host)

    assert host.run().rc == 0

    calls = {event["api"]: event for event in host.events("secret")}
    assert calls["GetSecretValue"]["ref"] == SM_ARN
    assert calls["GetSecretValue"]["region"] == "eu-central-1"  # the secret's own region, from its ARN
    assert calls["GetParameter"]["ref"] == PARAMETER
    assert calls["GetParameter"]["region"] == "eu-west-1"  # the job's region
    get_parameter = next(argv for argv in host.argvs() if argv[1:3] == ["ssm", "get-parameter"])
    assert "--with-decryption" in get_parameter
    assert get_parameter[get_parameter.index("--name") + 1] == "/run-job/secrets/api-key"


def test_secret_files_are_private_and_go_with_the_job_directory(host: Host) -> None:
    with_secrets(host)

    assert host.run().rc == 0

    files = host.docker_run()["files"]
    assert files["job_dir"]["secret-env"] == 0o600
    assert "secret.json" not in files["job_dir"]  # the aws answer held the value: gone at once
    assert files["/job/input.json"]["parent_mode"] == 0o700
    assert host.job_dirs() == []


def test_a_throttled_secret_read_is_retried(host: Host) -> None:
    with_secrets(host)
    host.scenario["secret_failures"] = 2

    assert host.run().rc == 0

    assert len(host.events("secret")) == 4  # two throttled reads of the first secret, then one each
    assert host.docker_run()["env"]["DB_PASSWORD"] == DB_PASSWORD


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        ({"error": "AccessDeniedException"}, "AccessDeniedException"),
        (None, "ResourceNotFoundException"),
        ({"binary": True}, "is binary"),
        ("a\u0000b", "holds a NUL character"),
    ],
    ids=["denied", "missing", "binary", "nul"],
)
def test_a_secret_that_cannot_be_read_fails_the_job_naming_it(host: Host, answer: Any, why: str) -> None:
    with_secrets(host)
    host.scenario["secrets"][SM_ARN] = answer
    host.scenario["secret_failures"] = 0

    result = host.run()

    assert result.rc == 0, result.stderr
    payload = host.signal()["payload"]
    assert payload["error"] == "Job.Failed"
    assert payload["cause"]["message"].startswith(f"could not read secret DB_PASSWORD ({SM_ARN}): ")
    assert why in payload["cause"]["message"]
    assert TOKEN[:40] not in str(payload["cause"])
    assert not host.events("pull")
    assert not host.events("run")
    assert host.job_dirs() == []


def test_secret_values_are_redacted_from_the_log_tail(host: Host) -> None:
    with_secrets(host)
    host.scenario["container"].update(exit_code=3, logs=f"connecting with {API_KEY}\nfailed\n")

    assert host.run().rc == 0

    tail = host.signal()["payload"]["cause"]["logTail"]
    assert API_KEY not in tail
    assert "connecting with [secret redacted]\nfailed" in tail


REFUSED_SECRETS = [
    ({"DB_PASSWORD": "s3://bucket/key"}, "must be a Secrets Manager ARN or ssm:/name"),
    ({"DB_PASSWORD": "ssm:/a b"}, "must be a Secrets Manager ARN or ssm:/name"),
    ({"DB_PASSWORD": SM_ARN + " --privileged"}, "must be a Secrets Manager ARN or ssm:/name"),
    ({"db_password": SM_ARN}, "is not an allowed variable name"),
    ({"TASK_TOKEN": SM_ARN}, "is not an allowed variable name"),
    ({"LD_PRELOAD": SM_ARN}, "is not an allowed variable name"),
    ({"LOG_LEVEL": SM_ARN}, "is also in env"),
    (Raw({"M": {"DB_PASSWORD": {"N": "1"}}}), "must be a Secrets Manager ARN or ssm:/name"),
    (Raw({"L": []}), "secrets must be of DynamoDB type M"),
]


@pytest.mark.parametrize(("secrets", "message"), REFUSED_SECRETS)
def test_a_record_with_a_bad_secret_reference_is_refused(host: Host, secrets: Any, message: str) -> None:
    host.scenario["record"] = job_record(secrets=secrets)

    result = host.run()

    assert result.rc == 0, result.stderr
    assert message in result.stderr
    assert host.signal()["payload"]["error"] == "Job.Failed"
    assert not host.events("secret")
    assert not host.events("run")


def test_a_record_without_secrets_reads_none(host: Host) -> None:
    assert "secrets" not in host.scenario["record"]

    assert host.run().rc == 0

    assert not host.events("secret")
    assert ["--name", JOB_ID] in host.docker_run()["options"]
