"""`jupyter telemetry`: validate schemas, list what the server would record, read event logs."""

from __future__ import annotations

import json
import sys
from collections.abc import Generator, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from jupyter_core.application import JupyterApp
from traitlets import Bool, Enum, List, TraitError, Unicode

from jupyter_telemetry_ext._version import __version__
from jupyter_telemetry_ext.core.command import Command
from jupyter_telemetry_ext.core.discovery import register_discovered, schema_folders
from jupyter_telemetry_ext.core.eventlog import EventLog
from jupyter_telemetry_ext.sinks.logreader import (
    BadLine,
    event_time,
    log_files,
    parse_since,
    read_events,
    tail_batches,
    unreadable,
)

from .configfile import ConfigCommand
from .stats import GROUPS, count_capsules
from .tables import MAX_CELL, render
from .validate import ValidateCommand


class SchemasCommand(ConfigCommand):
    """List the schemas the server would find, and whether the config allows them."""

    name = "jupyter-telemetry-schemas"
    description = """List the event schemas a Jupyter server with this extension would register:
    those in `telemetry/schemas` of every Jupyter data path and in
    c.TelemetryExtension.schema_paths. Reads the same config files as `jupyter server`, so the
    `allowed` column follows c.EventLog.allowed_schemas. Exit status 1 when no schema is
    found; 2 when the config is missing, fails or cannot be used (as it would stop the
    server)."""
    config_file_name = Unicode("jupyter_server_config")
    json_output = Bool(False, help="Print one JSON object per schema.").tag(config=True)
    flags = {"json": ({"SchemasCommand": {"json_output": True}}, "Print JSON lines.")}  # noqa: RUF012

    def start(self) -> None:
        """Print the discovered schemas; exit 1 when there is none."""
        try:
            eventlog = EventLog(config=self.config)
        except (TraitError, ValueError, TypeError) as e:  # the server would stop on it too
            self.fail(f"schemas: {self.config_where()}: the config cannot be used: {e}")
        folders = schema_folders(self._schema_paths())
        schemas = register_discovered(eventlog, folders, self.log)
        rows = [
            {"id": s.id, "version": s.version, "title": s.title, "frontend": s.frontend,
             "allowed": eventlog.is_allowed(s.id), "file": s.source}
            for s in sorted(schemas, key=lambda s: (s.id, s.version_key))
        ]  # fmt: skip
        if not rows:  # a server with this config would record nothing
            searched = ", ".join(str(f) for f in folders)
            self.fail(f"schemas: no event schemas found in {searched} (Jupyter data paths "
                      "and c.TelemetryExtension.schema_paths)", 1)  # fmt: skip
        _print_rows(rows, self.json_output)

    def _schema_paths(self) -> list[str]:
        section = self.config.get("TelemetryExtension", {})
        paths = section.get("schema_paths", []) if hasattr(section, "get") else []
        return [str(p) for p in paths] if isinstance(paths, (list, tuple)) else []


class LogCommand(Command):
    """A command that reads an event log and its rotated files."""

    schema_ids = List(Unicode(), help="Only events of these schema ids.").tag(config=True)
    since = Unicode(
        "", help="Only events at or after this time (RFC 3339, a date, or 2h/7d ago)."
    ).tag(config=True)
    json_output = Bool(False, help="Print JSON lines instead of a table.").tag(config=True)
    db = Unicode(
        "", help="Read the PostgreSQL event store at this URL (env:NAME: from that variable)."
    ).tag(config=True)
    table = Unicode("telemetry_events", help="The PostgreSQL events table.").tag(config=True)
    bad_lines = 0

    def path(self) -> Path:
        """Return the log named on the command line."""
        if len(self.extra_args) != 1:
            self.fail(f"{self.name.split('-')[-1]}: name exactly one event log file")
        path = Path(self.extra_args[0])
        if not log_files(path):
            self.fail(unreadable(path))
        return path

    def report(self, bad: BadLine) -> None:
        """Print a bad line's location and problem on stderr."""
        self.bad_lines += 1
        print(bad, file=sys.stderr)

    def since_time(self) -> datetime | None:
        """Return the time --since names, or None; stop when it cannot be read."""
        try:
            return parse_since(self.since) if self.since else None
        except ValueError as e:
            self.fail(str(e))

    def selected(self, capsules: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Yield the capsules that pass --schema and --since."""
        since = self.since_time()
        for capsule in capsules:
            if self.schema_ids and capsule.get("__schema__") not in self.schema_ids:
                continue
            when = event_time(capsule)
            if since is None or (when is not None and when >= since):
                yield capsule

    def check_found(self, count: int, where: str) -> None:
        """Say so when no event was found; stop (exit 1) when --schema or --since matched none.

        An empty store read whole is an honest answer (a new log): said on stderr, exit 0.
        """
        if count:
            return
        verb = self.name.split("-")[-1]
        if not (self.schema_ids or self.since):
            print(f"jupyter telemetry: {verb}: {where} holds no events", file=sys.stderr)
            return
        self.fail(f"{verb}: no events {self.filter_text()} in {where}", 1)

    def filter_text(self) -> str:
        """Return what --schema and --since select, as a message says it."""
        since = self.since_time()
        ids = ", ".join(repr(i) for i in self.schema_ids)
        parts = [f"of schema{'s' * (len(self.schema_ids) > 1)} {ids}"] if ids else []
        if since is not None:
            parts.append(f"at or after {since.isoformat()}")
        return " ".join(parts)


_LOG_ALIASES = {"schema": "LogCommand.schema_ids", "since": "LogCommand.since",
                "db": "LogCommand.db", "table": "LogCommand.table"}  # fmt: skip


class EventsCommand(LogCommand):
    """Print the events of a log as a table or JSON lines."""

    name = "jupyter-telemetry-events"
    description = """Print the events in a JSON-lines event log (and its rotated files, oldest
    first) as a readable table, or as JSON lines with --json. Bad lines are reported on stderr
    with their line number and skipped (exit status 1). Exit status 1 when --schema or --since
    matches no event (without --follow); an empty log is said so on stderr (exit status 0)."""
    examples = "jupyter telemetry events events.log --schema my.events/set1 --since 2h --follow"
    follow_log = Bool(False, help="Keep printing events as they are written.").tag(config=True)
    aliases = _LOG_ALIASES
    flags = {  # noqa: RUF012 - traitlets reads these class attributes
        "json": ({"LogCommand": {"json_output": True}}, "Print JSON lines."),
        "follow": (
            {"EventsCommand": {"follow_log": True}},
            "Keep printing new events (Ctrl-C ends).",
        ),
    }

    def start(self) -> None:
        """Print the log's events, then follow it when asked; exit 1 when a filter matched none."""
        if self.db:
            from .store import events_from_store

            events_from_store(self)
            return
        path = self.path()
        rotated = [p for p in log_files(path) if p != path]
        batches = tail_batches(path, self.report, forever=self.follow_log)
        first = list(self.selected([*read_events(rotated, self.report), *next(batches)]))
        _print_events(first, self.json_output)
        shown = len(first)
        try:
            for batch in batches:
                selected = list(self.selected(batch))
                _print_events(selected, self.json_output, header=False)
                shown += len(selected)
        except KeyboardInterrupt:
            pass
        if not self.follow_log:  # followed: new events may come until Ctrl-C
            self.check_found(shown, str(path))
        self.exit(1 if self.bad_lines else 0)


class StatsCommand(LogCommand):
    """Count events per period, schema, version and action; or per user; or per schema."""

    name = "jupyter-telemetry-stats"
    description = """Count the events of a JSON-lines event log (and its rotated files) per day
    (or hour, or all time), schema, version and action; with --by user, per user as recorded (the
    keyed hash, or the name, never resolved); with --by schema, per schema and version. Exit
    status 1 when --schema or --since matches no event; an empty log is said so on stderr (exit
    status 0)."""
    examples = "jupyter telemetry stats events.log --by user"
    by = Enum(
        list(GROUPS),
        "day",
        help="""What each count is of: day, hour or all (per period, schema, version and action),
        user (per recorded user) or schema (per schema and version). Default: day.""",
    ).tag(config=True)
    aliases = {**_LOG_ALIASES, "by": "StatsCommand.by"}  # noqa: RUF012 - traitlets reads these class attributes
    flags = {"json": ({"LogCommand": {"json_output": True}}, "Print JSON lines.")}  # noqa: RUF012 - traitlets reads these class attributes

    def start(self) -> None:
        """Print the counts; exit 1 when --schema or --since matched no event."""
        if self.db:
            from .store import stats_from_store

            stats_from_store(self, self.by)
            return
        path = self.path()
        rows = count_capsules(self.selected(read_events(log_files(path), self.report)), self.by)
        _print_rows(rows, self.json_output)
        self.check_found(len(rows), str(path))
        self.exit(1 if self.bad_lines else 0)


def _print_rows(rows: list[dict[str, Any]], as_json: bool, limit: int | None = MAX_CELL) -> None:
    if as_json:
        for row in rows:
            print(json.dumps(row))
    elif rows:
        print(render(list(rows[0]), [list(r.values()) for r in rows], limit))
    else:
        print("(none)")


def _print_events(capsules: list[dict[str, Any]], as_json: bool, header: bool = True) -> None:
    if as_json:
        for capsule in capsules:
            print(json.dumps(capsule), flush=True)
        return
    if not capsules and not header:
        return
    rows = [_event_row(c) for c in capsules]
    table = render(["time", "user", "schema", "version", "action", "data"], rows).splitlines()
    print("\n".join(table if header else table[2:]), flush=True)


def _event_row(capsule: dict[str, Any]) -> list[object]:
    data = {k: v for k, v in capsule.items() if not k.startswith("__") and k != "action"}
    summary = " ".join(f"{k}={json.dumps(v)}" for k, v in data.items())
    keys = ("__timestamp__", "__user__", "__schema__", "__schema_version__")
    head = [capsule.get(k) for k in keys]
    return [*head, capsule.get("action", ""), summary]


class TelemetryApp(JupyterApp):
    """`jupyter telemetry`: tools for Jupyter telemetry schemas and event logs."""

    name = "jupyter-telemetry"
    version = __version__
    description = "Tools for Jupyter telemetry: event schemas and event logs."
    subcommands = {  # noqa: RUF012 - traitlets reads these class attributes
        "validate": (ValidateCommand, ValidateCommand.__doc__ or ""),
        "schemas": (SchemasCommand, SchemasCommand.__doc__ or ""),
        "events": (EventsCommand, EventsCommand.__doc__ or ""),
        "stats": (StatsCommand, StatsCommand.__doc__ or ""),
        # The store commands subclass Command: named by import path, imported when run.
        "sql": ("jupyter_telemetry_ext.cli.store.SqlCommand", "Run a read-only SQL query."),
        "prune": ("jupyter_telemetry_ext.cli.store.PruneCommand", "Remove old events."),
        "export": ("jupyter_telemetry_ext.cli.store.ExportCommand", "Print a user's events."),
        "erase": ("jupyter_telemetry_ext.cli.store.EraseCommand", "Delete a user's events."),
        "audit": (
            "jupyter_telemetry_ext.cli.audit.AuditApp",
            "Check the audit streams: gaps, streams ended without a stop.",
        ),
        "consent": (
            "jupyter_telemetry_ext.cli.consent.ConsentApp",
            "Count the users' consent decisions per study and version.",
        ),
        "collect": (
            "jupyter_telemetry_ext.hub.collector.TelemetryCollector",
            "Run the JupyterHub collector service.",
        ),
    }

    def emit_description(self) -> Generator[str, None, None]:
        """Yield the usage line, then the description."""
        program = Path(sys.argv[0]).name if sys.argv else ""
        program = program if program and not program.endswith(".py") else self.name
        yield f"Usage: {program} SUBCOMMAND [OPTIONS]"
        yield ""
        yield from super().emit_description()

    def start(self) -> None:
        """Run the subcommand, or list them."""
        if self.subapp is None:
            names = ", ".join(self.subcommands)
            print(
                f"jupyter telemetry: name a subcommand ({names}); --help for more", file=sys.stderr
            )
            self.exit(2)
        else:
            self.subapp.start()


def main(argv: list[str] | None = None) -> None:
    """Run `jupyter telemetry`; a closed pipe (`| head`) or Ctrl-C ends it quietly."""
    try:
        TelemetryApp.launch_instance(argv)
    except BrokenPipeError:
        sys.stderr.close()  # nothing more can be written; Python would complain at exit
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
