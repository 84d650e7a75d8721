"""The catalog CLI (python -m dispatch.cli): list, show, swap, put; every write is checked with
the dispatch function's own parse_job_type first, so what it writes, dispatch accepts."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from dispatch import cli
from dispatch.catalog import CatalogError, parse_job_type

from .support import (
    BAD_ENTRY_CHANGES,
    DIGEST,
    REPOSITORY,
    SECRET_ARN,
    catalog_entries,
    catalog_parameter,
    changed_entry,
    event_for,
    job_request,
)


@pytest.fixture
def catalog_path(deployment: Any) -> str:
    return catalog_parameter(deployment.stack, "")


@pytest.fixture
def run(deployment: Any, catalog_path: str, capsys: pytest.CaptureFixture[str]) -> Any:
    """The CLI's exit status, stdout and stderr for one command line."""

    def call(*argv: str) -> tuple[int, str, str]:
        status = cli.main(["--path", catalog_path, *argv], ssm=deployment.ssm)
        out, err = capsys.readouterr()
        return status, out, err

    return call


def stored(deployment: Any, name: str) -> dict[str, Any]:
    value = deployment.ssm.get_parameter(Name=catalog_parameter(deployment.stack, name))["Parameter"]["Value"]
    entry: dict[str, Any] = json.loads(value)
    return entry


def test_list_shows_each_job_type_and_its_image(deployment, run):
    status, out, _ = run("list")
    assert status == 0
    images = {name: entry["image"] for name, entry in catalog_entries(deployment.stack).items()}
    assert out.splitlines() == [f"{name}\t{image}" for name, image in sorted(images.items())]


def test_list_flags_an_entry_dispatch_would_refuse(deployment, run):
    entry = {**catalog_entries(deployment.stack)["word-count"], "image": "--privileged"}
    deployment.ssm.put_parameter(
        Name=catalog_parameter(deployment.stack, "broken"), Type="String", Value=json.dumps(entry)
    )
    status, out, _ = run("list")
    assert status == 0
    assert "broken\tINVALID: image: must be an image reference" in out.splitlines()[0]


def test_show_prints_the_stored_entry(deployment, run):
    status, out, _ = run("show", "word-count")
    assert status == 0
    assert json.loads(out) == catalog_entries(deployment.stack)["word-count"]


def test_show_of_an_unknown_job_type_is_exit_3(run):
    assert run("show", "no-such-type")[0] == 3


@pytest.mark.parametrize("image", [f"{REPOSITORY}:word-count-2", f"{REPOSITORY}@{DIGEST}"], ids=["tag", "digest"])
def test_swap_changes_only_the_image_and_dispatch_runs_it(image, deployment, run, dispatch_app, invoke):
    before = stored(deployment, "word-count")
    status, out, _ = run("swap", "word-count", image)
    assert status == 0
    assert out.strip() == f"word-count: {before['image']} -> {image}"
    assert stored(deployment, "word-count") == {**before, "image": image}

    dispatch_app.catalog.clear_cache()
    result = invoke(event_for(job_request("word-count.json")))
    item = deployment.dynamodb.get_item(TableName=deployment.job_table, Key={"jobId": {"S": result["jobId"]}})
    assert item["Item"]["image"]["S"] == image


@pytest.mark.parametrize(
    "image", [f"{REPOSITORY}:1 --privileged", f"{REPOSITORY}:1;reboot", f"{REPOSITORY}@sha256:{'a' * 63}", ""]
)
def test_swap_to_an_invalid_image_writes_nothing(image, deployment, run):
    before = stored(deployment, "word-count")
    status, _, err = run("swap", "word-count", image)
    assert status == 1
    assert "image: must be an image reference" in err
    assert stored(deployment, "word-count") == before


def test_swap_of_an_unknown_job_type_is_exit_3(run):
    assert run("swap", "no-such-type", f"{REPOSITORY}:1")[0] == 3


def test_put_adds_a_job_type_from_a_file(deployment, run, tmp_path):
    entry = {**catalog_entries(deployment.stack)["checksum"], "secrets": {"DB_PASSWORD": SECRET_ARN}}
    path = tmp_path / "entry.json"
    path.write_text(json.dumps(entry, indent=2))
    status, out, _ = run("put", "with-secret", str(path))
    assert (status, out.strip()) == (0, "with-secret: written")
    assert stored(deployment, "with-secret") == entry
    assert parse_job_type("with-secret", stored(deployment, "with-secret")).secrets == {"DB_PASSWORD": SECRET_ARN}


def test_put_reads_stdin(deployment, run, monkeypatch):
    entry = catalog_entries(deployment.stack)["word-count"]
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(entry)))
    assert run("put", "from-stdin", "-")[0] == 0
    assert stored(deployment, "from-stdin") == entry


@pytest.mark.parametrize(
    ("changes", "field"), [case[1:] for case in BAD_ENTRY_CHANGES], ids=[case[0] for case in BAD_ENTRY_CHANGES]
)
def test_put_refuses_what_dispatch_refuses_with_the_same_message(changes, field, deployment, run, tmp_path):
    entry = changed_entry(catalog_entries(deployment.stack)["word-count"], changes)
    with pytest.raises(CatalogError) as caught:
        parse_job_type("word-count", entry)
    before = stored(deployment, "word-count")
    path = tmp_path / "entry.json"
    path.write_text(json.dumps(entry))

    status, _, err = run("put", "word-count", str(path))

    assert status == 1
    assert str(caught.value) in err
    assert stored(deployment, "word-count") == before


@pytest.mark.parametrize(("text", "why"), [("{not json", "not JSON"), ("[1, 2]", "one JSON object")])
def test_put_of_a_file_that_is_no_entry_writes_nothing(text, why, deployment, run, tmp_path):
    path = tmp_path / "entry.json"
    path.write_text(text)
    status, _, err = run("put", "new-type", str(path))
    assert status == 1
    assert why in err
    with pytest.raises(deployment.ssm.exceptions.ParameterNotFound):
        stored(deployment, "new-type")


def test_put_under_an_invalid_name_writes_nothing(deployment, run, tmp_path):
    path = tmp_path / "entry.json"
    path.write_text(json.dumps(catalog_entries(deployment.stack)["word-count"]))
    status, _, err = run("put", "Bad_Name", str(path))
    assert status == 1
    assert "name: must match" in err


def test_the_path_comes_from_catalog_path_by_default(deployment, catalog_path, monkeypatch, capsys):
    monkeypatch.setenv("CATALOG_PATH", catalog_path.rstrip("/"))
    assert cli.main(["show", "checksum"], ssm=deployment.ssm) == 0
    assert json.loads(capsys.readouterr().out)["image"] == catalog_entries(deployment.stack)["checksum"]["image"]
