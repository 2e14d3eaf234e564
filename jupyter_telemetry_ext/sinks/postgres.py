"""PostgresEventHandler: a `logging.Handler` that stores events in PostgreSQL, in batches.

`emit` only queues the capsule; a thread of the handler's own writes batches with COPY, one
transaction each. While the database is down, events wait in memory (up to `memory_events`),
then in a spool file (fsynced), and the thread reconnects with backoff; `flush()` waits until
every event handed over so far is committed, and raises when that does not happen in
`flush_timeout`. Before each batch the writer checks the store's tombstones (`erasures`): an
event of an erased user from before her erasure is dropped, never written.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, cast

import orjson

from jupyter_telemetry_ext.core.errors import (
    RowError,
    StoreError,
    StoreRefusedError,
    StoreUnavailableError,
)
from jupyter_telemetry_ext.core.records import RECORD_NAME, BatchEvent, CapsuleRecord, as_record

from .erasures import WriterTombstones, drops
from .pgrows import NOT_A_CAPSULE, Row, keyed_line, line_row, row_key, row_line, to_row
from .pgtable import DEFAULT_TABLE, ensure_table, masked, resolve_url, scrub, write_batch
from .spool import Spool

if TYPE_CHECKING:
    import psycopg

    from jupyter_telemetry_ext.core.tombstones import Tombstones


log = logging.getLogger("jupyter_telemetry_ext.sinks.postgres")
# Seconds the writer waits, once woken, for more events before it writes a batch.
LINGER = 0.01
# Events beyond `memory_events` are written to the spool this many at a time.
SPOOL_BLOCK = 1000


class _Batch:
    """Events taken for one write: rows from memory, or lines from the spool (and their end),
    or lines the spool could not take (`lines`)."""

    def __init__(self, items: list[Any], spool_end: int | None = None, lines: bool = False) -> None:
        self.items, self.spool_end, self.lines = items, spool_end, lines


class PostgresEventHandler(logging.Handler):
    """Stores each event in a PostgreSQL table, batched, idempotent by (user, client id).

    Parameters
    ----------
    url
        A libpq URL or key=value string; `env:NAME` reads it from that environment variable;
        empty (the default) reads $JUPYTER_TELEMETRY_DB. Its password is never logged.
    table
        The events table (default "telemetry_events"), created on first use with its companions.
    partition_by_day
        Create the table range-partitioned by UTC day of receipt (default False); applies only
        when the table is created. Retention then drops whole partitions.
    batch_size
        Most events written in one transaction (default 10000).
    memory_events
        Events kept in memory while they wait (default 100000); beyond, they wait in a spool file.
    spool_dir
        Folder of the spool files (default: `telemetry_spool` in the Jupyter data dir). A spool
        left by a stopped process is written by the next handler of the same table.
    flush_timeout
        Seconds `flush()` waits for the events handed over to be committed (default 10).
    max_backoff
        Longest wait between reconnection attempts, in seconds (default 30).
    """

    # logging.shutdown (which traitlets' dictConfig runs at every server start) need not wait
    # for a flush before closing (Python 3.12 and later ask): close() writes what it can and
    # spools the rest, so a database that is down never holds up a shutdown.
    flushOnClose = False  # noqa: N815 (logging's name)
    # True while a command reads a deployment's config for its settings (store, table, spool):
    # the handlers it makes leave the spools of stopped processes to the deployment's own.
    settings_only: ClassVar[bool] = False
    # flush() returns only once the events are committed: `audit_required` counts it durable.
    durable_flush: ClassVar[bool] = True

    def __init__(
        self,
        url: str = "",
        *,
        table: str = DEFAULT_TABLE,
        partition_by_day: bool = False,
        batch_size: int = 10_000,
        memory_events: int = 100_000,
        spool_dir: str | Path | None = None,
        flush_timeout: float = 10.0,
        max_backoff: float = 30.0,
        level: int = logging.NOTSET,
    ) -> None:
        """Check the settings; connect only when the first event arrives."""
        # What can fail comes before logging.Handler.__init__, which registers the handler for
        # logging.shutdown: a failed construction must leave no half-built handler behind.
        self._url = resolve_url(url)
        folder = Path(spool_dir) if spool_dir else _default_spool_dir()
        self.spool = Spool(folder, table, adopt=not PostgresEventHandler.settings_only)
        super().__init__(level)
        self.table, self.partition_by_day = table, partition_by_day
        self.batch_size, self.memory_events = max(1, batch_size), max(0, memory_events)
        self.flush_timeout, self.max_backoff = flush_timeout, max_backoff
        self.where = masked(self._url)
        self.counts = {"stored": 0, "duplicate": 0, "refused": 0, "erased": 0, "outages": 0}
        self.tombstones = WriterTombstones(table)
        self._memory: list[Row] = []  # built once, by `emit`: no dict per waiting event
        self._overflow: list[str] = []  # lines beyond memory_events, spooled SPOOL_BLOCK at once
        self._spool_error: OSError | None = None  # the spool's last append failed (a full disk)
        self._cond = threading.Condition()
        self._handed = self._done = 0
        self._flushing = 0  # threads waiting in `flush`: the writer does not linger for them
        self._stopping = False
        self._conn: psycopg.Connection[Any] | None = None
        self._partitioned = False
        self._down_since: float | None = None
        self._handed = self.spool.pending  # a spool adopted from a stopped process
        self._thread: threading.Thread | None = None
        self._running = False  # the writer thread takes what is queued
        _METRICS.add(self)
        if self.spool.pending:
            self._start()

    def __repr__(self) -> str:
        """Name the table and where it is, never the password."""
        return f"<PostgresEventHandler {self.where} table={self.table}>"

    @property
    def url(self) -> str:
        """Return the connection URL (its password included: never log it; `where` is safe)."""
        return self._url

    @property
    def pending(self) -> int:
        """Return how many events wait to be committed (in memory and in the spool)."""
        return self._handed - self._done

    def handle(self, record: logging.LogRecord) -> bool:
        """Queue the record when the filters pass it; `emit` locks what it shares, so this
        takes no handler-wide lock."""
        passed: object = self.filter(record) if self.filters else True
        if isinstance(passed, logging.LogRecord):  # Python 3.12: a filter may replace it
            record = passed
        if passed:
            self.emit(record)
        return bool(passed)

    def handle_batch(self, events: list[BatchEvent]) -> None:
        """Queue the rows of several events at once, as the EventLog's writer hands them over
        (see `records.takes_batches`); with filters, each event's record goes through them."""
        if self.filters:
            for event in events:
                self.handle(as_record(event))
            return
        room = max(self.memory_events - len(self._memory), 0)  # beyond: spooled as lines
        rows: list[Row] = []
        keep = rows.append
        for event in events[:room]:
            try:
                capsule: Any = event.msg  # read back from its line when a record holds none
                keep(to_row(capsule, event.key))
            except RowError as e:
                self._refused(as_record(event), e.sqlstate)
            except (KeyError, TypeError, ValueError, AttributeError):
                self._refused(as_record(event), NOT_A_CAPSULE)
        beyond = events[room:]
        if beyond and self._spool_full():
            for event in beyond:
                self._refuse_unspooled(as_record(event))
            beyond = []
        spooled = [_keyed_line(event) for event in beyond]
        with self._cond:
            if self._stopping or not self._running:
                self._reopen()
            waiting = len(self._memory)
            self._memory.extend(rows)
            self._overflow.extend(spooled)
            if len(self._overflow) >= SPOOL_BLOCK:
                self._try_spill()
            self._handed += len(rows) + len(spooled)
            if waiting == 0 or waiting + len(rows) >= self.batch_size:
                self._cond.notify_all()

    def emit(self, record: logging.LogRecord) -> None:
        """Queue the record's row for the writer thread (in memory, or spooled)."""
        capsule = record.msg
        if type(capsule) is not dict and not isinstance(capsule, Mapping):
            msg = "PostgresEventHandler takes event records (their msg is the capsule)"
            raise TypeError(msg)
        row: Row | None = None
        key = getattr(record, "key", None)  # made at reception (see core.event_keys)
        if len(self._memory) < self.memory_events:  # else spooled as its line, with its key
            try:
                row = to_row(capsule, key)
            except RowError as e:
                self._refused(record, e.sqlstate)
                return
            except (KeyError, TypeError, ValueError):
                self._refused(record, NOT_A_CAPSULE)
                return
        with self._cond:
            if self._stopping or not self._running:
                self._reopen()
            waiting = len(self._memory)
            if row is not None and waiting < self.memory_events:
                self._memory.append(row)
            elif self._spool_full():
                raise self._unspooled()
            else:
                line = getattr(record, "line", None) or json.dumps(capsule)
                self._overflow.append(keyed_line(line, row_key(capsule, key)))
                if len(self._overflow) >= SPOOL_BLOCK:
                    self._try_spill()
            self._handed += 1
            if waiting == 0 or waiting + 1 >= self.batch_size:  # wake the writer, or cut its
                self._cond.notify_all()  # linger short: a full batch is waiting

    def _spill(self) -> None:
        """Append the overflow to the spool (the caller holds the lock); when the spool cannot
        take it (a full disk: OSError), it stays in memory, and new events beyond memory are
        refused until an append succeeds."""
        if self._overflow:
            lines, self._overflow = self._overflow, []
            try:
                self.spool.append(lines)
            except OSError as e:
                self._overflow[:0] = lines
                self._spool_failed(e)
                raise
            self._spool_error = None

    def _try_spill(self) -> None:
        """Spill the overflow; what the spool cannot take stays in memory (logged once)."""
        with contextlib.suppress(OSError):
            self._spill()

    def _spool_full(self) -> bool:
        """Return whether an event beyond memory must be refused: the spool's last append
        failed and the overflow already holds a block."""
        return self._spool_error is not None and len(self._overflow) >= SPOOL_BLOCK

    def _spool_failed(self, error: OSError) -> None:
        """Note that the spool refused an append; log it once until an append succeeds."""
        if self._spool_error is None:
            log.error("Telemetry: the PostgreSQL spool in %s cannot take events (%s); they "
                      "wait in memory, and events beyond %d in memory are refused until it can",
                      self.spool.folder, error.strerror or type(error).__name__,
                      self.memory_events + SPOOL_BLOCK)  # fmt: skip
        self._spool_error = error

    def _unspooled(self) -> StoreUnavailableError:
        """Return the error of an event refused because neither memory nor the spool holds it."""
        msg = (
            f"the PostgreSQL spool in {self.spool.folder} cannot take events "
            f"({self._spool_error.strerror if self._spool_error else ''}) and memory is full"
        )
        return StoreUnavailableError(msg)

    def _refuse_unspooled(self, record: logging.LogRecord) -> None:
        """Report one event refused for want of room: a sink failure, as `emit` raising is."""
        try:
            raise self._unspooled()
        except StoreUnavailableError:
            self.handleError(record)

    def _reopen(self) -> None:
        """Start (again) writing: closed handlers get events too, e.g. after `logging.shutdown`
        (which `logging.config.dictConfig` calls while a Jupyter application starts)."""
        self._stopping = False
        if not self._running:
            _METRICS.add(self)
            self._start()

    def _start(self) -> None:
        self._running = True  # until the thread decides to end, under the lock
        self._thread = threading.Thread(target=self._run, name="telemetry-postgres", daemon=True)
        self._thread.start()

    def flush(self) -> None:
        """Wait until every event handed over so far is committed; raise when it is not in time."""
        with self._cond:
            target = self._handed
            self._flushing += 1
            self._cond.notify_all()  # a writer lingering for a fuller batch: write it now
            try:
                committed = self._cond.wait_for(lambda: self._done >= target, self.flush_timeout)
            finally:
                self._flushing -= 1
            waiting = target - self._done
        if not committed:
            self._spool_memory()  # whatever happens to this process next, they are on disk
            msg = (
                f"{waiting} events not committed to PostgreSQL {self.where} table "
                f"{self.table} within {self.flush_timeout} s; they wait in the spool and are "
                "retried"
            )
            raise StoreUnavailableError(msg)

    def _spool_memory(self) -> None:
        """Move the events waiting in memory to the spool (those it cannot take stay)."""
        with self._cond:
            rest, self._memory = self._memory, []
            self._try_spill()
        if not rest:
            return
        try:
            self.spool.append([row_line(row) for row in rest])
        except OSError as e:
            with self._cond:
                self._memory[:0] = rest
                self._spool_failed(e)
            return
        self._spool_error = None
        log.warning("Telemetry: %d events spooled to %s until PostgreSQL takes them",
                    len(rest), self.spool.folder)  # fmt: skip

    def close(self) -> None:
        """Write what is queued (for up to `flush_timeout`), spool the rest, disconnect."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(self.flush_timeout + 1)
        self._spool_memory()
        with self._cond:
            unsaved = len(self._memory) + len(self._overflow)
        if unsaved:
            log.error("Telemetry: %d events neither committed to PostgreSQL %s table %s nor "
                      "spooled (the spool in %s cannot take them) are lost if this process ends",
                      unsaved, self.where, self.table, self.spool.folder)  # fmt: skip
        if self._thread is None or not self._thread.is_alive():  # else reopened meanwhile
            self._disconnect()
            _METRICS.discard(self)
        super().close()

    # The writer thread

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            with self._cond:
                self._running = False

    def _loop(self) -> None:
        backoff = 0.1
        while True:
            batch = self._take()
            if batch is None:
                return
            if self._write(batch):
                backoff = 0.1
                continue
            self._give_back(batch)  # on disk while the database is away; retried from there
            with self._cond:
                if self._stopping:
                    self._running = False
                    return
                self._cond.wait(backoff)
            backoff = min(backoff * 2, self.max_backoff)

    def _take(self) -> _Batch | None:
        """Return the next batch (the spool's first), or None once stopping with nothing left."""
        with self._cond:
            while True:
                self._try_spill()  # what waits beyond memory_events: to the spool, then taken
                if self.spool.pending:
                    break
                if self._overflow and self._spool_error is not None:  # written from memory
                    lines = self._overflow[: self.batch_size]
                    del self._overflow[: self.batch_size]
                    return _Batch(lines, lines=True)
                if self._memory:
                    self._linger()
                    items = self._memory[: self.batch_size]  # in one step: the caller waits
                    del self._memory[: self.batch_size]
                    return _Batch(items)
                if self._stopping:
                    self._running = False
                    return None
                self._cond.wait(1.0 if self._overflow else None)  # the spool may take it later
        taken, end = self.spool.take(self.batch_size)
        return _Batch(taken, end)

    def _linger(self) -> None:
        """Wait a moment (the lock held by the caller is released meanwhile) for events arriving
        together to fill a batch: one COPY and one commit for them all, not one each; not while
        a thread waits for them to be committed (`flush`)."""
        deadline = time.monotonic() + LINGER
        while len(self._memory) < self.batch_size and not self._stopping and not self._flushing:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._cond.wait(left)

    def _give_back(self, batch: _Batch) -> None:
        """Keep a batch that could not be written: spooled, or left in the spool; in memory
        when the spool cannot take it."""
        if batch.spool_end is not None:
            return
        lines = batch.items if batch.lines else [row_line(row) for row in batch.items]
        try:
            self.spool.append(lines)
        except OSError as e:
            with self._cond:
                if batch.lines:
                    self._overflow[:0] = lines
                else:
                    self._memory[:0] = batch.items
                self._spool_failed(e)
            return
        self._spool_error = None

    def _write(self, batch: _Batch) -> bool:
        """Store a batch; return False when the database is unavailable (it is kept)."""
        from psycopg import Error

        try:
            conn = self._connection()
            with self.tombstones.guard(conn) as tombstones:
                stored = self._store(conn, batch, tombstones)
        except (Error, StoreError) as e:
            self._outage(e)
            return False
        if batch.spool_end is not None:
            self.spool.done(batch.spool_end, len(batch.items))
        self._recovered()
        with self._cond:
            self.counts["stored"] += stored
            self._done += len(batch.items)
            self._cond.notify_all()
        return True

    def _connection(self) -> psycopg.Connection[Any]:
        import psycopg

        if self._conn is None or self._conn.closed:
            # The rows' text is UTF-8 whatever the database's encoding: PostgreSQL converts it.
            self._conn = psycopg.connect(self._url, autocommit=True, connect_timeout=10,
                                         client_encoding="UTF8")  # fmt: skip
            self._partitioned = ensure_table(self._conn, self.table, self.partition_by_day)
            self.tombstones.ensure(self._conn)
        return self._conn

    def _store(self, conn: psycopg.Connection[Any], batch: _Batch, tombstones: Tombstones) -> int:
        """Write a batch; split one PostgreSQL refuses for a data reason, down to the bad row.

        Rows from memory are copied as the list they are; spooled lines become rows as the
        COPY takes them: PostgreSQL works meanwhile. Rows of erased users (`tombstones`) are
        dropped on the way.
        """
        from psycopg import DataError

        made: list[Row]
        rows: Iterable[Row]
        if batch.spool_end is None and not batch.lines:  # rows made by `emit` or `handle_batch`
            made = rows = self._alive(batch.items, tombstones) if tombstones else batch.items
        else:
            made = []
            rows = self._rows(batch.items, made)
            if tombstones:
                rows = self._living(rows, made, tombstones)
        try:
            stored = write_batch(conn, self.table, rows, self._partitioned)
        except DataError as e:
            refusal = str(e.sqlstate)  # its message may quote data
        else:
            self._duplicates(len(made) - stored)
            return stored
        if rows is not made:
            made.extend(rows)  # the rows the refused COPY did not get to
        return self._store_rows(conn, made, refusal)

    def _alive(self, rows: list[Row], tombstones: Tombstones) -> list[Row]:
        """Return the rows that are not events of an erased user from before her erasure."""
        living = [row for row in rows if not drops(tombstones, row)]
        if len(living) < len(rows):
            with self._cond:
                self.counts["erased"] += len(rows) - len(living)
        return living

    def _rows(self, items: list[Any], made: list[Row]) -> Iterator[Row]:
        """Yield the rows of a batch (noting each in `made`); refuse lines that make none."""
        for item in items:
            row = item
            if type(item) is str:
                try:
                    row = line_row(item)
                except RowError as e:
                    self._refused_row(None, e.sqlstate)
                    continue
                except (KeyError, TypeError, ValueError):
                    self._refused_row(None, NOT_A_CAPSULE)
                    continue
            made.append(row)
            yield row

    def _living(self, rows: Iterator[Row], made: list[Row], tombstones: Tombstones
                ) -> Iterator[Row]:  # fmt: skip
        """Yield the rows that are not events of an erased user from before her erasure."""
        for row in rows:
            if drops(tombstones, row):
                made.pop()  # `_rows` noted it last
                with self._cond:
                    self.counts["erased"] += 1
                continue
            yield row

    def _store_rows(self, conn: psycopg.Connection[Any], rows: list[Row], refusal: str) -> int:
        """Write rows that PostgreSQL refused together (`refusal`) in halves, to the bad row."""
        from psycopg import DataError

        if len(rows) == 1:
            self._refused_row(rows[0], refusal)
            return 0
        stored = 0
        half = len(rows) // 2
        for part in (rows[:half], rows[half:]):
            try:
                written = write_batch(conn, self.table, part, self._partitioned)
            except DataError as e:
                refusal = str(e.sqlstate)  # split outside `except`: no traceback quoting a row
            else:
                self._duplicates(len(part) - written)
                stored += written
                continue
            stored += self._store_rows(conn, part, refusal)
        return stored

    def _duplicates(self, n: int) -> None:
        with self._cond:
            self.counts["duplicate"] += n

    def _refused_row(self, row: Row | None, sqlstate: str) -> None:
        """Report a row (or a damaged spooled line) the table will never take."""
        capsule = orjson.loads(row_line(row)) if row is not None else {}
        self._refused(CapsuleRecord(RECORD_NAME, capsule, ""), sqlstate)

    def _refused(self, record: logging.LogRecord, sqlstate: str) -> None:
        """Report an event the table will never take: counted as a sink failure (logged once,
        described to failed_handlers by the SQLSTATE alone)."""
        with self._cond:
            self.counts["refused"] += 1
        try:
            raise StoreRefusedError(sqlstate)
        except StoreRefusedError:
            self.handleError(record)

    def _outage(self, error: Exception) -> None:
        self._disconnect()
        if self._down_since is not None:
            return
        self._down_since = time.monotonic()
        self.counts["outages"] += 1
        log.error(
            "Telemetry: PostgreSQL %s table %s unavailable (%s); events wait (%d in memory, "
            "then in %s) and are retried with backoff",
            self.where, self.table, scrub(str(error).strip(), self._url), self.memory_events,
            self.spool.folder,
        )  # fmt: skip

    def _recovered(self) -> None:
        if self._down_since is None:
            return
        seconds = time.monotonic() - self._down_since
        self._down_since = None
        log.warning("Telemetry: PostgreSQL %s table %s available again after %.1f s",
                    self.where, self.table, seconds)  # fmt: skip

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # a broken connection may fail to close; it is dropped anyway
                log.debug("closing a broken PostgreSQL connection failed", exc_info=True)


def _keyed_line(event: BatchEvent) -> str:
    """Return the line an event waits in the spool as, its store key included."""
    capsule = cast(Mapping[str, Any], event.msg)
    return keyed_line(event.line or json.dumps(capsule), row_key(capsule, event.key))


def _default_spool_dir() -> Path:
    from jupyter_core.paths import jupyter_data_dir

    return Path(jupyter_data_dir()) / "telemetry_spool"


class _Metrics:
    """The live handlers, read by the Prometheus collector at scrape time."""

    def __init__(self) -> None:
        self.handlers: weakref.WeakSet[PostgresEventHandler] = weakref.WeakSet()
        self.registered = False

    def add(self, handler: PostgresEventHandler) -> None:
        self.handlers.add(handler)
        if not self.registered:
            self.registered = True
            try:
                from .pgmetrics import register

                register(self)
            except ImportError:  # no prometheus_client: nothing to expose
                pass

    def discard(self, handler: PostgresEventHandler) -> None:
        self.handlers.discard(handler)


_METRICS = _Metrics()
