"""`jupyter telemetry` on the event stores: sql, prune, export, erase; events and stats --db."""

from __future__ import annotations

import getpass
import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from traitlets import Bool, List, Unicode

from jupyter_telemetry_ext.core.command import Command
from jupyter_telemetry_ext.core.errors import SecretFileError, StoreError
from jupyter_telemetry_ext.core.printable import printable
from jupyter_telemetry_ext.core.recorded_user import SECRET_FILE, hashed_user
from jupyter_telemetry_ext.sinks.logreader import log_files, parse_since, unreadable
from jupyter_telemetry_ext.sinks.pgtable import DEFAULT_TABLE, URL_VARIABLE

from . import deployment
from .configfile import ConfigCommand
from .main import LogCommand, _print_events, _print_rows
from .pgextra import require_psycopg
from .schemalookup import schema_lookup, typed_versions
from .tables import MAX_CELL, cut_cells

if TYPE_CHECKING:
    import psycopg

DB_HELP = f"""PostgreSQL URL of the event store (a libpq URL or key=value string), or env:NAME to
read it from the environment variable NAME; needs the [postgres] extra (psycopg). Empty (the
default): the log file named on the command line, else ${URL_VARIABLE}."""


def events_from_store(command: LogCommand) -> None:
    """`jupyter telemetry events --db URL`: print the stored events (filters as for files)."""
    from jupyter_telemetry_ext.sinks import store

    with _connect(command, command.db, command.table) as conn:
        since = _since(command, command.since)
        stored = store.select_events(conn, command.table, command.schema_ids, since)
        capsules = list(typed_versions(stored, schema_lookup(command.config, command.log)))
    _print_events(capsules, command.json_output)
    command.check_found(len(capsules), described(command.db, command.table))


def stats_from_store(command: LogCommand, period: str) -> None:
    """`jupyter telemetry stats --db URL`: count the stored events per period, schema, action."""
    from jupyter_telemetry_ext.sinks import store

    with _connect(command, command.db, command.table) as conn:
        since = _since(command, command.since)
        rows = store.count_events(conn, command.table, period, command.schema_ids, since)
    _print_rows(rows, command.json_output)
    command.check_found(len(rows), described(command.db, command.table))


def described(url: str, table: str = "") -> str:
    """Return how messages name a PostgreSQL store: host, port, database (and table)."""
    from jupyter_telemetry_ext.sinks.pgtable import masked, resolve_url

    return f"PostgreSQL {masked(resolve_url(url))}" + f" table {table}" * bool(table)


def _since(command: Command, text: str, option: str = "--since") -> Any:
    try:
        return parse_since(text, option=option) if text else None
    except ValueError as e:
        command.fail(str(e))


def _connect(
    command: Command, url: str, table: str, read_only: bool = False
) -> psycopg.Connection[Any]:
    """Connect to the store; stop with one line when it cannot be (psycopg missing, ...)."""
    from jupyter_telemetry_ext.sinks.store import connect

    require_psycopg(command, command.name.removeprefix("jupyter-telemetry-").replace("-", " "))
    try:
        return connect(url, table, read_only)
    except StoreError as e:
        command.fail(str(e))


class StoreCommand(ConfigCommand):
    """A command on an event store: a log file named on the command line, or --db."""

    config_file_name = Unicode("jupyter_server_config")
    db = Unicode("", help=DB_HELP).tag(config=True)
    table = Unicode(DEFAULT_TABLE, help="The PostgreSQL events table.").tag(config=True)
    secret_file = Unicode(
        "",
        help=f"""A file holding the key of hashed user names. Empty (the default): the
        `c.TelemetryCollector.user_hash_secret` or `c.TelemetryExtension.user_hash_secret` of
        the config (--config PATH, else jupyter_server_config), else the file {SECRET_FILE} in
        the Jupyter data dir (where a collector or server without a configured key keeps the one
        it generated).""",
    ).tag(config=True)
    spool_dir = Unicode(
        "",
        help="""The folder of the PostgreSQL handler's outage spool, whose waiting events
        `export` prints and `erase` counts (they are dropped before they are written). Empty
        (the default): the `spool_dir` of the config's PostgresEventHandler, else
        `telemetry_spool` in the Jupyter data dir.""",
    ).tag(config=True)

    def handler(self) -> Any:
        """Return the config's PostgresEventHandler (its store and spool), or None."""
        return deployment.postgres_handler(self.config)

    def log_path(self) -> Path | None:
        """Return the log file named on the command line, else that of the FileHandler of the
        config named with --config, or None for the database."""
        if self.db or (not self.extra_args and (os.environ.get(URL_VARIABLE) or self.handler())):
            return None
        named = self.config_file and not self.extra_args
        configured = deployment.log_file(self.config) if named else None
        if configured is None and len(self.extra_args) != 1:
            self.fail(f"{self.command_name}: name one event log file, or --db URL")
        path = configured or Path(self.extra_args[0])
        if not log_files(path):
            self.fail(unreadable(path))
        return path

    def connect(self, read_only: bool = False) -> psycopg.Connection[Any]:
        """Connect to the database store: --db, else the config's PostgresEventHandler's."""
        handler = None if self.db or os.environ.get(URL_VARIABLE) else self.handler()
        if handler is not None:
            if self.table == DEFAULT_TABLE:
                self.table = handler.table
            return _connect(self, handler.url, self.table, read_only)
        return _connect(self, self.db, self.table, read_only)

    def store_described(self, table: bool = True) -> str:
        """Return how messages name the database store `connect` connects to."""
        handler = None if self.db or os.environ.get(URL_VARIABLE) else self.handler()
        url = handler.url if handler is not None else self.db
        return described(url, self.table if table else "")

    def spool_folder(self) -> Path:
        """Return the folder of the PostgreSQL handler's outage spool."""
        if self.spool_dir:
            return Path(self.spool_dir)
        handler = self.handler()
        return handler.spool.folder if handler is not None else deployment.default_spool_dir()

    @property
    def command_name(self) -> str:
        """Return the command as typed after `jupyter telemetry` (prune, consent list, ...)."""
        return self.name.removeprefix("jupyter-telemetry-").replace("-", " ")

    @property
    def verb(self) -> str:
        """Return the subcommand's name (erase, export, ...)."""
        return self.name.split("-")[-1]

    def users(self, name: str, hashed_store: Callable[[], bool]) -> list[str]:
        """Return the `__user__` values `name` is recorded as: its keyed hash, and the name.

        Stop when no key is found and the store holds hashed users (`hashed_store()`): the name
        alone would match nothing, and "0 events" would be a false answer.
        """
        try:
            found = deployment.find_secret(self.config, self.secret_file, self.data_dir)
        except SecretFileError as e:
            self.fail(f"{self.verb}: {e}")
        if found is None:
            if hashed_store():
                self.fail(
                    f"{self.verb}: the store records users as keyed hashes, and no key "
                    "was found: give the collector's or server's config with --config "
                    "PATH (its user_hash_secret), or the key file with --secret-file"
                )
            print(f"jupyter telemetry: {self.verb}: no user hash key found; matching the plain "
                  "user name only", file=sys.stderr)  # fmt: skip
            return [name]
        secret, where = found
        self.log.info("The user-hash key of %s is used", where)
        return [hashed_user(secret, name), name]

    def check_user(self, name: str) -> None:
        """Stop when no user is named."""
        if not name:
            dataset = " (or write a dataset: --format parquet|csv --out DIR)"
            extra = dataset if self.verb == "export" else ""
            self.fail(f"{self.verb}: name the user with --user NAME{extra}")


_STORE_ALIASES = {"db": "StoreCommand.db", "table": "StoreCommand.table",
                  "secret-file": "StoreCommand.secret_file", "config": "JupyterApp.config_file",
                  "spool-dir": "StoreCommand.spool_dir"}  # fmt: skip


class SqlCommand(StoreCommand):
    """Run one SQL statement on the event store, in a read-only transaction."""

    name = "jupyter-telemetry-sql"
    description = """Run one SQL statement on the PostgreSQL event store, in a read-only
    transaction of a read-only session, and print its rows as a table (or JSON lines with
    --json). Several statements, and statements that end the transaction or change the session
    (BEGIN, COMMIT, ROLLBACK, SET, DO, COPY, ...), are refused. Table cells longer than 64
    characters end with how many were cut, e.g. `…(+1234 chars)`; --full or --json prints them
    whole. For analysts, connect as a role that can only read (see the docs). Exit status 1
    when the statement returns no rows, or PostgreSQL refuses it."""
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
        """Print the statement's rows; exit 1 when there is none."""
        query = self._query()
        with self.connect(read_only=True) as conn:
            headers, rows = self._run(conn, query)
            superuser = conn.info.parameter_status("is_superuser") == "on"
        self._print(headers, [[_plain(value) for value in row] for row in rows])
        if superuser:
            print("jupyter telemetry: sql: connected as a superuser, whose queries can read and "
                  "write the server's files (pg_read_file, COPY TO PROGRAM); analysts should "
                  "use a role with pg_read_all_data only", file=sys.stderr)  # fmt: skip
        if not rows:
            self.fail(f"sql: the statement returned no rows from {self.store_described(False)}", 1)

    def _run(self, conn: psycopg.Connection[Any], query: str) -> tuple[list[str], list[Any]]:
        import psycopg

        from jupyter_telemetry_ext.sinks.store import read_only_query

        try:
            return read_only_query(conn, query)
        except psycopg.Error as e:
            self._refused(e)

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
    if text.startswith("--"):  # a line comment ends at a line feed or a carriage return
        end = re.search(r"[\n\r]", text)
        return text[end.end() :] if end else ""
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
    daily partitions are dropped, other rows deleted). Exit status 1 when no event was that old
    (nothing was removed)."""
    examples = "jupyter telemetry prune --older-than 90d events.log"
    older_than = Unicode("", help="Age (90d, 12h) or time (RFC 3339 or a date).").tag(config=True)
    aliases = {**_STORE_ALIASES, "older-than": "PruneCommand.older_than"}  # noqa: RUF012

    def start(self) -> None:
        """Prune and report how many events were removed; exit 1 when none was."""
        if not self.older_than:
            self.fail("prune: say which events with --older-than 90d")
        before = _since(self, self.older_than, "--older-than")
        path = self.log_path()
        if path is not None:
            from jupyter_telemetry_ext.sinks.retention import prune_files

            removed, where = prune_files(path, before), str(path)
        else:
            from jupyter_telemetry_ext.sinks.store import prune

            with self.connect() as conn:
                removed = prune(conn, self.table, before)
            where = self.store_described()
        if not removed:
            self.fail(f"prune: no events received before {before.isoformat()} in {where}: "
                      "nothing was removed", 1)  # fmt: skip
        print(f"removed {removed} events received before {before.isoformat()}")


class ExportCommand(StoreCommand):
    """Print every event of one user as JSON lines (a person's data, on request), or write a
    research dataset (--format parquet|csv --out DIR)."""

    name = "jupyter-telemetry-export"
    description = """Two exports. With --user NAME: print, as JSON lines, every event recorded
    for one user in a log (and its rotated files) or in the PostgreSQL store, and those waiting
    in its handler's outage spool. The user is found by the keyed hash of NAME (record_user =
    "hashed", with the key of the deployment's config: --config PATH) or by NAME itself.
    With --format parquet|csv --out DIR: write a research dataset of every user's events (of
    the logs named, or the store): one file per schema and version, manifest.json and
    datasheet.md; users re-keyed with a salt made for this export (--salt to choose it), and
    properties whose privacy categories are not unrestricted left out (--include-category to
    keep some). Needs the [analysis] extra. Exit status 1 when there is no event."""
    examples = """jupyter telemetry export --user alice --config /etc/jupyterhub/telemetry_config.py
    > alice.jsonl
    jupyter telemetry export --format parquet --out dataset/ --since 2026-09-01 events.log"""
    user = Unicode("", help="The user name (a person's export).").tag(config=True)
    format = Unicode(
        "",
        help="""Write a research dataset in this format (parquet or csv) into --out. Empty (the
        default): the person's export of --user.""",
    ).tag(config=True)
    out = Unicode("", help="The dataset's folder: new or empty (required with --format).").tag(
        config=True
    )
    schema_ids = List(
        Unicode(), help="Only events of these schema ids (a dataset). Empty: every schema."
    ).tag(config=True)
    since = Unicode(
        "", help="Only events received at or after this time (RFC 3339, a date, or 7d ago)."
    ).tag(config=True)
    until = Unicode(
        "", help="Only events received before this time (RFC 3339, a date, or 7d ago)."
    ).tag(config=True)
    salt = Unicode(
        "",
        help="""The salt users are re-keyed with (at least 16 characters; env:NAME reads it
        from the variable NAME, off the command line): datasets exported with the same salt can
        be joined by user. Empty (the default): a random salt, not kept, so that no two
        datasets can be.""",
    ).tag(config=True)
    include_category = List(
        Unicode(),
        help="""Privacy categories whose properties the dataset keeps besides unrestricted ones
        (e.g. user-identifiable-information). Empty (the default): only unrestricted
        properties.""",
    ).tag(config=True)
    aliases = {**_STORE_ALIASES, "user": "ExportCommand.user", "format": "ExportCommand.format",  # noqa: RUF012
               "out": "ExportCommand.out", "schema": "ExportCommand.schema_ids",
               "since": "ExportCommand.since", "until": "ExportCommand.until",
               "salt": "ExportCommand.salt",
               "include-category": "ExportCommand.include_category"}  # fmt: skip

    def start(self) -> None:
        """Print the user's events, or write a dataset; exit 1 when there is none."""
        from jupyter_telemetry_ext.core.tombstones import HASHED

        dataset_options = (self.format, self.out, self.schema_ids, self.since, self.until,
                           self.salt, self.include_category)  # fmt: skip
        if any(dataset_options):  # a person's export takes none of them: never ignored
            from .dataset import write_dataset

            write_dataset(self)
            return
        self.check_user(self.user)
        path = self.log_path()
        if path is not None:
            from jupyter_telemetry_ext.sinks.retention import holds_hashed_users, user_events

            users = self.users(self.user, lambda: holds_hashed_users(path))
            printed = _print_each(user_events(path, set(users)))
            where = str(path)
        else:
            printed = self._export_store()
            where = f"the store and the spool {self.spool_folder()}"
        if not printed:
            hint = "" if HASHED.fullmatch(self.user) else "; check the name and the key (--config)"
            self.fail(f"export: no events of this user in {where}{hint}", 1)

    def _export_store(self) -> int:
        from jupyter_telemetry_ext.sinks import spool, store

        lookup = schema_lookup(self.config, self.log)  # the store keeps versions as text
        with self.connect() as conn:
            users = self.users(self.user, lambda: store.holds_hashed_users(conn, self.table))
            stored = _print_each(typed_versions(store.select_user(conn, self.table, users), lookup))
            ids = store.user_client_ids(conn, self.table, users)
        spooled = spool.user_events(self.spool_folder(), self.table, users, ids)
        return stored + _print_each(typed_versions(spooled, lookup))


def _print_each(capsules: Iterator[dict[str, Any]]) -> int:
    count = 0
    for capsule in capsules:
        print(json.dumps(capsule))
        count += 1
    return count


class EraseCommand(StoreCommand):
    """Delete every event of one user; the erasure itself is recorded (never whose)."""

    name = "jupyter-telemetry-erase"
    description = """Delete every event recorded for one user from a log (and its rotated files)
    or from the PostgreSQL store, and print how many. A tombstone (a keyed hash of the user and
    the time) is kept in the store: events of hers from before now that arrive later (from an
    outage spool, a forwarder, a retry) are dropped before they are written; those waiting in
    the handler's spool are counted. The erasure is recorded (when, who ran it, how many events;
    never whose): in `<log>-erasures.jsonl`, or the `<table>_erasures` table. Exit status 1 when
    no event of the user was found (the tombstone is kept all the same)."""
    examples = "jupyter telemetry erase --user alice --config /etc/jupyterhub/telemetry_config.py"
    user = Unicode("", help="The user name (required).").tag(config=True)
    aliases = {**_STORE_ALIASES, "user": "EraseCommand.user"}  # noqa: RUF012

    def start(self) -> None:
        """Erase, keep a tombstone, and report how many events were removed."""
        self.check_user(self.user)
        path = self.log_path()
        if path is not None:
            from jupyter_telemetry_ext.sinks.retention import erase_files, holds_hashed_users

            users = self.users(self.user, lambda: holds_hashed_users(path))
            removed, spooled, where = erase_files(path, set(users)), 0, str(path)
        else:
            removed, spooled = self._erase_store()
            where = f"the store or the spool {self.spool_folder()}"
        waiting = f"; {spooled} more waiting in the spool are dropped when written" * bool(spooled)
        print(f"erased {removed} events{waiting}")
        if not removed + spooled:
            self.fail(f"erase: no events of this user in {where} (a tombstone is kept: events "
                      "of theirs from before now are dropped should any arrive); check the "
                      "name and the key (--config)", 1)  # fmt: skip

    def _erase_store(self) -> tuple[int, int]:
        from jupyter_telemetry_ext.sinks import spool, store

        with self.connect() as conn:
            users = self.users(self.user, lambda: store.holds_hashed_users(conn, self.table))
            ids = store.user_client_ids(conn, self.table, users)
            removed = self._erase_events(conn, users)
            self._erase_decisions(conn, users)
        spooled = spool.user_events(self.spool_folder(), self.table, users, ids)
        return removed, sum(1 for _ in spooled)

    def _erase_events(self, conn: psycopg.Connection[Any], users: list[str]) -> int:
        import psycopg

        from jupyter_telemetry_ext.sinks import store

        try:
            return store.erase_user(conn, self.table, users, getpass.getuser())
        except psycopg.errors.LockNotAvailable:
            self.fail("erase: a writer kept its batch under way too long; nothing was "
                      "erased: run it again", 1)  # fmt: skip
        except psycopg.Error as e:  # e.g. no right to create the tombstone tables
            self.fail(f"erase: nothing was erased: {str(e).strip()}", 1)

    def _erase_decisions(self, conn: Any, users: list[str]) -> None:
        """Erase the user's consent decisions with their events (one transaction): grants and
        notices deleted, declines kept without the name (erasing never turns recording on)."""
        import psycopg

        from jupyter_telemetry_ext.sinks import consent_table

        table = consent_table.consent_table(self.table)
        if not consent_table.exists(conn, table):
            return
        try:
            deleted, kept = consent_table.erase_user_rows(conn, table, users)
        except psycopg.Error as e:
            self.fail(f"erase: nothing was erased (the consent decisions could not be): "
                      f"{str(e).strip()}", 1)  # fmt: skip
        print(f"erased {deleted} consent decisions; {kept} withdrawals kept, by keyed hash only")
