"""The job type catalog CLI: list, show, swap an image, put an entry.

    PYTHONPATH=src python -m dispatch.cli [--path /STACK/job-types/] list
    PYTHONPATH=src python -m dispatch.cli show NAME
    PYTHONPATH=src python -m dispatch.cli swap NAME IMAGE      # a tag or a digest
    PYTHONPATH=src python -m dispatch.cli put NAME FILE        # FILE "-" reads stdin

Every write is checked with the dispatch function's own parse_job_type first, so the CLI
refuses exactly the entries dispatch would refuse (as Job.UnknownType) and nothing invalid
reaches the catalog. AWS settings come from the usual places (profile, AWS_REGION,
AWS_ENDPOINT_URL for the local stack). Exit status: 0 done, 1 refused, 2 usage, 3 no such
job type.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import boto3
from botocore.exceptions import ClientError

from dispatch.catalog import CatalogError, parse_job_type

DEFAULT_PATH = "/run-job/job-types/"
REFUSED, USAGE, NOT_FOUND = 1, 2, 3


class Refused(Exception):
    """The command cannot be done; the message says why."""


class NotFound(Exception):
    """No catalog entry of that name."""


def _read(ssm: Any, path: str, name: str) -> dict[str, Any]:
    try:
        value = ssm.get_parameter(Name=path + name)["Parameter"]["Value"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ParameterNotFound":
            raise NotFound(f"{name}: no such job type under {path}") from None
        raise
    try:
        entry = json.loads(value)
    except json.JSONDecodeError:
        raise Refused(f"{name}: the stored entry is not JSON; replace it with put") from None
    if not isinstance(entry, dict):
        raise Refused(f"{name}: the stored entry is not a JSON object; replace it with put")
    return entry


def _write(ssm: Any, path: str, name: str, entry: dict[str, Any]) -> None:
    try:
        parse_job_type(name, entry)
    except CatalogError as exc:
        raise Refused(f"{name}: {exc}; nothing written") from None
    ssm.put_parameter(Name=path + name, Type="String", Value=json.dumps(entry, separators=(",", ":")), Overwrite=True)


def list_job_types(ssm: Any, path: str) -> list[str]:
    """One line per job type: its name and image, or why dispatch would refuse it."""
    lines = []
    for page in ssm.get_paginator("get_parameters_by_path").paginate(Path=path, Recursive=False):
        for parameter in page["Parameters"]:
            name = parameter["Name"].removeprefix(path)
            try:
                lines.append(f"{name}\t{parse_job_type(name, parameter['Value']).image}")
            except CatalogError as exc:
                lines.append(f"{name}\tINVALID: {exc}")
    return sorted(lines)


def show(ssm: Any, path: str, name: str) -> str:
    return json.dumps(_read(ssm, path, name), indent=2, ensure_ascii=False)


def swap(ssm: Any, path: str, name: str, image: str) -> str:
    entry = _read(ssm, path, name)
    before = entry.get("image")
    _write(ssm, path, name, {**entry, "image": image})
    return f"{name}: {before} -> {image}"


def put(ssm: Any, path: str, name: str, text: str) -> str:
    try:
        entry = json.loads(text)
    except json.JSONDecodeError as exc:
        raise Refused(f"{name}: the file is not JSON ({exc.msg} at line {exc.lineno}); nothing written") from None
    if not isinstance(entry, dict):
        raise Refused(f"{name}: the file must hold one JSON object; nothing written")
    _write(ssm, path, name, entry)
    return f"{name}: written"


def _file_text(name: str) -> str:
    if name == "-":
        return sys.stdin.read()
    try:
        with open(name, encoding="utf-8") as file:
            return file.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise Refused(f"cannot read {name}: {exc}") from None


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(prog="python -m dispatch.cli", description="Manage the job type catalog.")
    cli.add_argument(
        "--path",
        default=os.environ.get("CATALOG_PATH", DEFAULT_PATH),
        help="the catalog's SSM path (the stack's JobTypeCatalogPath output; default $CATALOG_PATH or %(default)s)",
    )
    commands = cli.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="job types and their images")
    commands.add_parser("show", help="one entry's JSON").add_argument("name")
    swapping = commands.add_parser("swap", help="change a job type's image (tag or digest)")
    swapping.add_argument("name")
    swapping.add_argument("image")
    putting = commands.add_parser("put", help="add or replace an entry from a JSON file")
    putting.add_argument("name")
    putting.add_argument("file", help="the entry's JSON file, - for stdin")
    return cli


def main(argv: list[str] | None = None, ssm: Any = None) -> int:
    args = parser().parse_args(argv)
    path = args.path if args.path.endswith("/") else args.path + "/"
    ssm = ssm or boto3.client("ssm")
    try:
        if args.command == "list":
            print("\n".join(list_job_types(ssm, path)))
        elif args.command == "show":
            print(show(ssm, path, args.name))
        elif args.command == "swap":
            print(swap(ssm, path, args.name, args.image))
        else:
            print(put(ssm, path, args.name, _file_text(args.file)))
    except Refused as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return REFUSED
    except NotFound as exc:
        print(str(exc), file=sys.stderr)
        return NOT_FOUND
    return 0


if __name__ == "__main__":
    sys.exit(main())
