"""`jupyter telemetry export --format parquet|csv --out DIR`: a research dataset."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jupyter_telemetry_ext.core.errors import AnalysisExtraError, NothingToExportError
from jupyter_telemetry_ext.sinks.pgtable import DEFAULT_TABLE, URL_VARIABLE, masked

from .pgextra import require_psycopg
from .schemalookup import schema_lookup

if TYPE_CHECKING:
    from jupyter_telemetry_ext.analysis.dataset import DatasetRequest, SchemaLookup

    from .store import ExportCommand


def write_dataset(command: ExportCommand) -> None:
    """Write the dataset the command asks for and say what it holds; stop on any problem."""
    from jupyter_telemetry_ext.analysis.dataset import export_dataset

    request = _request(command)
    try:
        manifest = export_dataset(request, _lookup(command))
    except AnalysisExtraError as e:
        command.fail(f"export: {e}")
    except NothingToExportError:
        command.fail(f"export: no events {_selected(request)}in {request.described_source}: "
                     "nothing was written", 1)  # fmt: skip
    except (OSError, ValueError) as e:
        command.fail(f"export: {e}")
    for entry in manifest["files"]:
        if not entry["found"]:
            print(f"jupyter telemetry: export: schema {entry['schema']} version "
                  f"{entry['version']} was not found (--config, schema_paths): every property "
                  "of its events was left out", file=sys.stderr)  # fmt: skip
    _unused_categories(command, manifest)
    print(f"exported {manifest['events']} events in {len(manifest['files'])} files to "
          f"{request.out} (manifest.json, datasheet.md)")  # fmt: skip


def _selected(request: DatasetRequest) -> str:
    """Return what --schema, --since and --until select, as a message says it ("" for all)."""
    selection = request.selection
    parts = [f"of schema {selection.schema!r} "] if selection.schema else []
    if selection.since is not None:
        parts.append(f"received at or after {selection.since.isoformat()} ")
    if selection.until is not None:
        parts.append(f"received before {selection.until.isoformat()} ")
    return "".join(parts)


def _unused_categories(command: ExportCommand, manifest: dict[str, Any]) -> None:
    """Say which --include-category names no exported property has (a typo keeps nothing)."""
    seen = {category for entry in manifest["files"] for column in entry["columns"]
            for category in column["categories"]}  # fmt: skip
    for category in sorted(set(command.include_category) - seen):
        print(f"jupyter telemetry: export: --include-category {category}: no exported property "
              "has this category (check the name)", file=sys.stderr)  # fmt: skip


def _request(command: ExportCommand) -> DatasetRequest:
    from jupyter_telemetry_ext.analysis.dataset import FORMATS, DatasetRequest
    from jupyter_telemetry_ext.analysis.sources import Selection

    if command.user:
        command.fail("export: --user (a person's data) and --format (a research dataset) are "
                     "two exports: give one")  # fmt: skip
    if command.format not in FORMATS or not command.out:
        command.fail("export: a dataset needs --format parquet|csv and --out DIR")
    salt = _salt(command)
    schema = command.schema_ids[0] if len(command.schema_ids) == 1 else None
    if len(command.schema_ids) > 1:
        command.fail("export: --schema takes one schema id (leave it out for every schema)")
    try:
        selection = Selection(
            schema,
            _time(command, command.since, "--since"),
            _time(command, command.until, "--until"),
        )
    except ValueError as e:
        command.fail(f"export: --{e}")
    source, table, described = _source(command)
    return DatasetRequest(source, Path(command.out), command.format, selection,
                          frozenset(command.include_category), salt, table, described)  # fmt: skip


def _salt(command: ExportCommand) -> str:
    """Return the salt given (env:NAME: read from that variable, kept off the command line)."""
    from jupyter_telemetry_ext.analysis.dataset import check_salt

    salt = command.salt
    if salt.startswith("env:"):
        salt = os.environ.get(salt[4:], "")
        if not salt:
            command.fail(f"export: --salt {command.salt}: the variable is empty or not set")
    try:
        return check_salt(salt)
    except ValueError as e:
        command.fail(f"export: {e}")


def _time(command: ExportCommand, text: str, option: str) -> Any:
    from jupyter_telemetry_ext.sinks.logreader import parse_since

    try:
        return parse_since(text, option=option) if text else None
    except ValueError as e:
        command.fail(f"export: {e}")


def _source(command: ExportCommand) -> tuple[Any, str, str]:
    """Return the source (a URL, or the logs named), its table, and how to describe it."""
    from_env = bool(os.environ.get(URL_VARIABLE))
    if command.db or (not command.extra_args and (from_env or command.handler())):
        handler = None if command.db or from_env else command.handler()
        url = handler.url if handler is not None else (command.db or f"env:{URL_VARIABLE}")
        table = handler.table if handler is not None and command.table == DEFAULT_TABLE else ""
        require_psycopg(command, "export")
        described = url if url.startswith("env:") else f"PostgreSQL {masked(url)}"
        return url, table or command.table, described
    if not command.extra_args:
        command.fail("export: name the event logs (files, globs or folders), or --db URL")
    return list(command.extra_args), command.table, ", ".join(command.extra_args)


def _lookup(command: ExportCommand) -> SchemaLookup:
    """Return a lookup of the schemas a server with this config would find."""
    return schema_lookup(command.config, command.log)
