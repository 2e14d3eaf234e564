"""`jupyter telemetry` on the event stores: sql, prune, export, erase; events and stats --db."""

from __future__ import annotations

import getpass
import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from traitlets import Bool, Unicode

from jupyter_telemetry_ext.core.command import Command
from jupyter_telemetry_ext.core.errors import StoreError
from jupyter_telemetry_ext.core.printable import printable
from jupyter_telemetry_ext.core.recorded_user import SECRET_FILE, hashed_user
from jupyter_telemetry_ext.sinks.logreader import log_files, parse_since
from jupyter_telemetry_ext.sinks.pgtable import DEFAULT_TABLE, URL_VARIABLE

from .main import LogCommand, _print_events, _print_rows
from .tables import MAX_CELL, cut_cells

if TYPE_CHECKING:
    import psycopg

DB_HELP = f"""PostgreSQL URL of the event store (a libpq URL or key=value string), or env:NAME to
read it from the environment variable NAME. Empty (the default): the log file named on the command
line, else ${URL_VARIABLE}."""


def events_from_store(command: LogCommand) -> None:
    """`jupyter telemetry events --db URL`: print the stored events (filters as for files)."""
    from jupyter_telemetry_ext.sinks import store

    with _connect(command, command.db, command.table) as conn:
        since = _since(command, command.since)
        capsules = list(store.select_events(conn, command.table, command.schema_ids, since))
    _print_events(capsules, command.json_output)


def stats_from_store(command: LogCommand, period: str) -> None:
    """`jupyter telemetry stats --db URL`: count the stored events per period, schema, action."""
    from jupyter_telemetry_ext.sinks import store

    with _connect(command, command.db, command.table) as conn:
        since = _since(command, command.since)
        rows = store.count_events(conn, command.table, period, command.schema_ids, since)
    _print_rows(rows, command.json_output)


def _since(command: Command, text: str) -> Any:
    try:
        return parse_since(text) if text else None
    except ValueError as e:
        command.fail(str(e))


def _connect(
    command: Command, url: str, table: str, read_only: bool = False
) -> psycopg.Connection[Any]:
    from jupyter_telemetry_ext.sinks.store import connect

    try:
        return connect(url, table, read_only)
    except StoreError as e:
        command.fail(str(e))


class StoreCommand(Command):
    """A command on an event store: a log file named on the command line, or --db."""

    config_file_name = Unicode("jupyter_server_config")
    db = Unicode("", help=DB_HELP).tag(config=True)
    table = Unicode(DEFAULT_TABLE, help="The PostgreSQL events table.").tag(config=True)
    secret_file = Unicode(
        "",
        help=f"""The key of hashed user names. Empty (the default): the server's
        c.TelemetryExtension.user_hash_secret, else the file {SECRET_FILE} in the Jupyter data
        dir.""",
    ).tag(config=True)

    def log_path(self) -> Path | None:
        """Return the log file named on the command line, or None for the database."""
        if self.db or (not self.extra_args and os.environ.get(URL_VARIABLE)):
            return None
        if len(self.extra_args) != 1:
            self.fail(f"{self.name.split('-')[-1]}: name one event log file, or --db URL")
        path = Path(self.extra_args[0])
        if not log_files(path):
            self.fail(f"{path}: cannot read: no such file")
        return path

    def connect(self) -> psycopg.Connection[Any]:
        """Connect to the database store."""
        return _connect(self, self.db, self.table)

    def users(self, name: str) -> list[str]:
        """Return the `__user__` values `name` is recorded as: its keyed hash, and the name."""
        if not name:
            self.fail(f"{self.name.split('-')[-1]}: name the user with --user NAME")
        secret = self._secret()
        if secret is None:
            print("jupyter telemetry: no user hash key found; matching the plain user name only",
                  file=sys.stderr)  # fmt: skip
            return [name]
        return [hashed_user(secret, name), name]

    def _secret(self) -> bytes | None:
        configured = self.config.get("TelemetryExtension", {}).get("user_hash_secret", "")
        if configured and not self.secret_file:
            return str(configured).encode()
        from jupyter_core.paths import jupyter_data_dir

        path = Path(self.secret_file or Path(jupyter_data_dir()) / SECRET_FILE)
        return path.read_bytes().strip() if path.is_file() else None


_STORE_ALIASES = {"db": "StoreCommand.db", "table": "StoreCommand.table",
                  "secret-file": "StoreCommand.secret_file"}  # fmt: skip


class SqlCommand(StoreCommand):
    """Run one SQL statement on the event store, in a read-only transaction."""

    name = "jupyter-telemetry-sql"
    description = """Run one SQL statement on the PostgreSQL event store, in a read-only
    transaction of a read-only session, and print its rows as a table (or JSON lines with
    --json). Several statements, and statements that end the transaction or change the session
    (BEGIN, COMMIT, ROLLBACK, SET, DO, COPY, ...), are refused. Table cells longer than 64
    characters end with how many were cut, e.g. `…(+1234 chars)`; --full or --json prints them
    whole. For analysts, connect as a role that can only read (see the docs)."""
    examples = 'jupyter telemetry sql --db env:TELEMETRY_DB "SELECT count(*) FROM telemetry_events"'
    aliases = _STORE_ALIASES
    flags = {  # noqa: RUF012 - traitlets reads these class attributes
        "json": ({"SqlCommand": {"json_output": True}}, "Print JSON lines."),
        "full": ({"SqlCommand": {"full": True}}, "Print long values whole in the table."),
    }
    json_output = Bool(False, help="Print JSON lines instead of a table.").tag(config=True)
    full = Bool(
        False,
        help="""Print each value whole in the table. Default: a cell longer than 64 characters
        ends with how many were cut, e.g. `…(+1234 chars)`.""",
    ).tag(config=True)

    def start(self) -> None:
        """Print the statement's rows."""
        import psycopg

        from jupyter_telemetry_ext.sinks.store import read_only_query

        query = self._query()
        with _connect(self, self.db, self.table, read_only=True) as conn:
            try:
                headers, rows = read_only_query(conn, query)
            except psycopg.Error as e:
                self._refused(e)
            superuser = conn.info.parameter_status("is_superuser") == "on"
        self._print(headers, [[_plain(value) for value in row] for row in rows])
        if superuser:
            print("jupyter telemetry: sql: connected as a superuser, whose queries can read and "
                  "write the server's files (pg_read_file, COPY TO PROGRAM); analysts should "
                  "use a role with pg_read_all_data only", file=sys.stderr)  # fmt: skip

    def _print(self, headers: list[str], rows: list[list[Any]]) -> None:
        limit = None if self.full else MAX_CELL
        _print_rows([dict(zip(headers, row, strict=True)) for row in rows], self.json_output,
                    limit)  # fmt: skip
        cut = 0 if self.json_output else cut_cells(rows, limit)
        if cut:
            print(f"jupyter telemetry: sql: {cut} values cut to {MAX_CELL} characters, ending "
                  "…(+N chars); --full or --json prints them whole", file=sys.stderr)  # fmt: skip

    def _query(self) -> str:
        if len(self.extra_args) != 1:
            self.fail('sql: give the statement as one argument: "SELECT ..."')
        query = self.extra_args[0]
        start = statement_start(query)
        if not start:
            self.fail("sql: the statement is empty")
        keyword = re.split(r"[^A-Za-z_]", start, maxsplit=1)[0].upper()
        if keyword in REFUSED_KEYWORDS:
            self.fail(f"sql: {keyword} is refused: one statement runs, alone, in a read-only "
                      "transaction that it may not end or change")  # fmt: skip
        return query

    def _refused(self, error: psycopg.Error) -> NoReturn:
        message = printable(str(error).strip().splitlines()[0] if str(error).strip() else "")
        if error.sqlstate == SYNTAX_ERROR and "multiple commands" in message:
            self.fail("sql: give one statement: several were given (separated by ';')")
        self.fail(f"sql: {message or type(error).__name__}", 1)


# Statements that end or open a transaction, change the session, run code or programs, or
# maintain the server: the read-only transaction stands without this list, which only says no
# early and clearly.
REFUSED_KEYWORDS = frozenset(
    ("ABORT", "BEGIN", "CALL", "COMMIT", "COPY", "DISCARD", "DO", "END", "LISTEN", "LOAD",
     "LOCK", "NOTIFY", "PREPARE", "RELEASE", "RESET", "ROLLBACK", "SAVEPOINT", "SET", "START",
     "UNLISTEN", "VACUUM", "CHECKPOINT")
)  # fmt: skip
SYNTAX_ERROR = "42601"


def statement_start(query: str) -> str:
    """Return the statement from its first word: after blanks, `;`, `(` and comments."""
    while True:
        rest = _skip_comment(query.lstrip(_BLANKS))
        if rest == query:
            return rest
        query = rest


def _skip_comment(text: str) -> str:
    """Return `text` after a leading `--` line or `/* */` (nested, as PostgreSQL reads it)."""
    if text.startswith("--"):
        return text.partition("\n")[2]
    depth, i = (1, 2) if text.startswith("/*") else (0, 0)
    while depth and i < len(text):
        pair = text[i : i + 2]
        depth += {"/*": 1, "*/": -1}.get(pair, 0)
        i += 2 if pair in ("/*", "*/") else 1
    return text[i:]


_BLANKS = " \t\n\r\f\v;("


def _plain(value: Any) -> Any:
    """Return a value JSON can print (timestamps and the like as text)."""
    return (
        value if isinstance(value, (str, int, float, bool, dict, list, type(None))) else str(value)
    )


class PruneCommand(StoreCommand):
    """Remove the events older than a duration from a log or the database."""

    name = "jupyter-telemetry-prune"
    description = """Remove events received before a time: from a JSON-lines log and its rotated
    files (rewritten; emptied rotated files are deleted), or from the PostgreSQL store (whole
    daily partitions are dropped, other rows deleted)."""
    examples = "jupyter telemetry prune --older-than 90d events.log"
    older_than = Unicode("", help="Age (90d, 12h) or time (RFC 3339 or a date).").tag(config=True)
    aliases = {**_STORE_ALIASES, "older-than": "PruneCommand.older_than"}  # noqa: RUF012

    def start(self) -> None:
        """Prune and report how many events were removed."""
        if not self.older_than:
            self.fail("prune: say which events with --older-than 90d")
        before = _since(self, self.older_than)
        path = self.log_path()
        if path is not None:
            from jupyter_telemetry_ext.sinks.retention import prune_files

            removed = prune_files(path, before)
        else:
            from jupyter_telemetry_ext.sinks.store import prune

            with self.connect() as conn:
                removed = prune(conn, self.table, before)
        print(f"removed {removed} events received before {before.isoformat()}")


class ExportCommand(StoreCommand):
    """Print every event of one user as JSON lines (a person's data, on request)."""

    name = "jupyter-telemetry-export"
    description = """Print, as JSON lines, every event recorded for one user in a log (and its
    rotated files) or in the PostgreSQL store. The user is found by the keyed hash of NAME (the
    server's record_user = "hashed") or by NAME itself."""
    examples = "jupyter telemetry export --user alice --db env:TELEMETRY_DB > alice.jsonl"
    user = Unicode("", help="The user name.").tag(config=True)
    aliases = {**_STORE_ALIASES, "user": "ExportCommand.user"}  # noqa: RUF012

    def start(self) -> None:
        """Print the user's events."""
        users = self.users(self.user)
        for capsule in self._events(users):
            print(json.dumps(capsule))

    def _events(self, users: list[str]) -> Iterator[dict[str, Any]]:
        path = self.log_path()
        if path is not None:
            from jupyter_telemetry_ext.sinks.retention import user_events

            yield from user_events(path, set(users))
            return
        from jupyter_telemetry_ext.sinks.store import select_user

        with self.connect() as conn:
            yield from select_user(conn, self.table, users)


class EraseCommand(StoreCommand):
    """Delete every event of one user; the erasure itself is recorded (never whose)."""

    name = "jupyter-telemetry-erase"
    description = """Delete every event recorded for one user from a log (and its rotated files)
    or from the PostgreSQL store, and print how many. The erasure is recorded (when, who ran it,
    how many events; never whose): in `<log>-erasures.jsonl`, or the `<table>_erasures` table."""
    examples = "jupyter telemetry erase --user alice events.log"
    user = Unicode("", help="The user name.").tag(config=True)
    aliases = {**_STORE_ALIASES, "user": "EraseCommand.user"}  # noqa: RUF012

    def start(self) -> None:
        """Erase and report how many events were removed."""
        users = self.users(self.user)
        path = self.log_path()
        if path is not None:
            from jupyter_telemetry_ext.sinks.retention import erase_files

            removed = erase_files(path, set(users))
        else:
            from jupyter_telemetry_ext.sinks.store import erase_user

            with self.connect() as conn:
                removed = erase_user(conn, self.table, users, getpass.getuser())
        print(f"erased {removed} events")
