"""Handing recorded events to `logging` handlers, so that one failing handler harms nothing else.

`Sink` is where the EventLog sends each capsule: it decides once whether every handler writes
JSON lines, queues for the background writer or writes on the caller's thread, holds a thread's
batch, tracks tickets, and describes what a handler did not write to `failed_handlers`.
`Delivery` calls the handlers and counts what each did not write.
"""

from __future__ import annotations

import errno
import logging
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Union, cast

from . import filesink
from .errors import QueueFullError
from .event_keys import EventKey, key_bytes
from .jsonline import encode as _encode
from .outcomes import SINK_FAILURE
from .records import (
    FAILED_RECORD_NAME,
    LINE_FORMATTER,
    RECORD_NAME,
    CapsuleRecord,
    HeldEvent,
    LinesRecord,
    Queued,
    as_record,
    takes_batches,
    writes_lines,
)
from .tickets import Ticket
from .timestamps import Timestamps
from .writer import BackgroundWriter

LossListener = Callable[[logging.Handler, Union[BaseException, None], list[Any]], None]  # noqa: UP007


class Delivery:
    """Calls each handler in turn; counts the events each handler did not write, logs its first
    failure.

    A file (`logging.FileHandler`) is exact: after a failed write, the events it holds whole
    are counted written, the others lost and cut from the file (see `filesink`). For any other
    handler, every event of a failed call is counted lost.
    """

    def __init__(self, log: logging.Logger) -> None:
        """Report handler failures on `log`."""
        self.log = log
        self.failures: Counter[logging.Handler] = Counter()
        self.schema_failures: Counter[str] = Counter()
        self.lost: Counter[tuple[logging.Handler, str]] = Counter()
        self.on_lost: LossListener | None = None  # told of each loss, e.g. to describe it
        self._watched: set[logging.Handler] = set()
        self._logged: set[logging.Handler] = set()
        self._lock = threading.Lock()  # each handler's thread may report its failures
        # A file write's error, held (under the handler's lock) until the file is settled.
        self._errors: dict[logging.Handler, BaseException | None] = {}
        # When each file is next looked at for having been replaced (`filesink.reopen_if_replaced`).
        self._replace_checks: dict[logging.Handler, float] = {}
        # The stream each file was last written through: a new one is checked for a torn end.
        self._streams: dict[logging.Handler, Any] = {}

    def deliver(self, handlers: Iterable[logging.Handler], record: CapsuleRecord) -> None:
        """Hand the record to every handler whose level lets it through."""
        for handler in handlers:
            self._deliver(handler, record)

    def deliver_many(self, handler: logging.Handler, items: list[Queued]) -> None:
        """Hand events to one handler: as one write of all their lines when it writes lines, in
        one call when it takes batches (`takes_batches`), else one record each."""
        if handler not in self._watched:
            self.watch(handler)  # first: it may give the handler its line formatter
        if writes_lines(handler) and (len(items) > 1 or type(items[0]) is str):
            self._deliver(handler, LinesRecord(items))
        elif takes_batches(handler):
            self._deliver_batch(handler, items)
        else:
            for item in items:
                self._deliver(handler, as_record(item))

    def _deliver_batch(self, handler: logging.Handler, items: list[Queued]) -> None:
        """Hand events to a handler's `handle_batch`; count them all lost when it raises."""
        if handler.level > logging.INFO:
            return
        events = [_held(item) if type(item) is str else item for item in items]
        try:
            handler.handle_batch(events)  # type: ignore[attr-defined]
        except Exception as e:
            self._lost(handler, e, list(items))

    def _deliver(self, handler: logging.Handler, record: CapsuleRecord) -> None:
        if handler not in self._watched:
            self.watch(handler)
        if record.levelno < handler.level:
            return
        if isinstance(handler, logging.FileHandler):
            self._deliver_to_file(handler, record)
            return
        try:
            handler.handle(record)
        except Exception as e:
            self.failed(handler, e, record)

    def _deliver_to_file(self, handler: logging.FileHandler, record: CapsuleRecord) -> None:
        """Write to a file; after a failure, count exactly the events that are not in it."""
        if not handler.filter(record):
            return
        handler.acquire()  # what `handle` does, with the file measured and settled inside
        try:
            now = time.monotonic()
            if now >= self._replace_checks.get(handler, 0.0):
                self._replace_checks[handler] = now + filesink.REPLACED_CHECK_SECONDS
                filesink.reopen_if_replaced(handler)
            if handler.stream is None or self._streams.get(handler) is not handler.stream:
                self._cut_torn_tail(handler)
            stream, start = handler.stream, filesink.position(handler)
            try:
                handler.emit(record)
            except Exception as e:
                self._errors[handler] = e
            self._streams[handler] = handler.stream
            error = self._errors.pop(handler, _NO_ERROR)
            if error is _NO_ERROR:
                return
            if handler.stream is not stream and stream is not None:
                start = 0  # the handler rolled over to a new file before writing
            lost = self._settle(handler, record, start)
        finally:
            handler.release()
        self._lost(handler, error, lost)

    def _cut_torn_tail(self, handler: logging.FileHandler) -> None:
        """Cut an event a crash left partly written at the end of the file, and say so."""
        cut = filesink.cut_torn_tail(handler)
        if cut:
            self.log.warning(
                "Telemetry: cut %d bytes of an event partly written at the end of %s (a write "
                "cut short by a crash or a full disk); the events before it are kept",
                cut, handler.baseFilename,
            )  # fmt: skip

    def _settle(
        self, handler: logging.FileHandler, record: CapsuleRecord, start: int | None
    ) -> list[Any]:
        """Leave whole events only in the file; return those of `record` that are not in it."""
        items = _items(record)
        if writes_lines(handler):
            sizes = filesink.line_sizes([as_record(item).line for item in items], handler)
        else:
            sizes = [filesink.UNKNOWN_SIZE]
        return items[filesink.settle(handler, start, sizes) :]

    def watch(self, handler: logging.Handler) -> None:
        """Route the handler's own error reporting (`handleError`) to our failure count."""
        if handler in self._watched:
            return

        def handle_error(record: logging.LogRecord) -> None:
            if isinstance(record, CapsuleRecord) and isinstance(handler, logging.FileHandler):
                self._errors[handler] = sys.exc_info()[1]  # settled once the write returns
                return
            self.failed(handler, sys.exc_info()[1], record)

        handler.handleError = handle_error  # type: ignore[method-assign]
        if handler.formatter is None and isinstance(handler, logging.StreamHandler):
            handler.setFormatter(LINE_FORMATTER)
        self._watched.add(handler)

    def unwatch(self, handler: logging.Handler) -> None:
        """Give the handler back its own error reporting."""
        if handler in self._watched:
            self._watched.discard(handler)
            handler.__dict__.pop("handleError", None)
            if handler.formatter is LINE_FORMATTER:
                handler.setFormatter(None)

    def failed(
        self,
        handler: logging.Handler,
        error: BaseException | None,
        record: logging.LogRecord | None = None,
    ) -> None:
        """Count the events of a failed call as lost (none for a failed flush); log the first."""
        self._lost(handler, error, _items(record) if record is not None else [])

    def _lost(
        self, handler: logging.Handler, error: BaseException | None, items: list[Any]
    ) -> None:
        """Count `items` lost by `handler` (per handler and schema); log its first failure."""
        with self._lock:
            first = handler not in self._logged
            self._logged.add(handler)
            for item in items:
                self.failures[handler] += 1
                if not isinstance(item, (CapsuleRecord, HeldEvent, str)):
                    continue  # a record of someone else's logging, sharing the handler
                record = as_record(item)
                if record.name == RECORD_NAME:
                    schema_id = record.schema_id
                    self.schema_failures[schema_id] += 1
                    self.lost[(handler, schema_id)] += 1
        if first:
            self.log.error(
                "Event handler %r failed; its later failures are counted, not logged",
                handler,
                exc_info=error or True,
            )
        self._tell(handler, error, items)

    def _tell(
        self, handler: logging.Handler, error: BaseException | None, items: list[Any]
    ) -> None:
        for item in items:
            ticket = getattr(item, "ticket", None)
            if ticket is not None:
                ticket.lost(handler, item)
        if items and self.on_lost is not None:
            try:
                self.on_lost(handler, error, items)
            except Exception:  # describing a loss must not stop a writer thread
                self.log.exception("Describing lost events failed")

    def settle(self, handler: logging.Handler, tickets: list[Ticket]) -> None:
        """Tell `tickets` that `handler` got past their events, flushing a handler that buffers
        (and syncing a file to disk for a `sync` ticket) once for them all."""
        if not tickets:
            return
        try:
            if not isinstance(handler, logging.StreamHandler):  # a stream flushes at each write
                handler.flush()
            elif isinstance(handler, logging.FileHandler) and any(t.sync for t in tickets):
                filesink.sync(handler)
        except Exception as e:
            for ticket in tickets:
                ticket.failed(handler)
            self.failed(handler, e)
        for ticket in tickets:
            ticket.done()


_NO_ERROR = BaseException()  # no error was held for the handler
# How events are queued for a background writer (see `Sink.form`).
LINE, BATCHES, HELD, RECORD = "line", "batches", "held", "record"


def _form(handlers: list[logging.Handler]) -> str:
    """Return the form of the events queued for `handlers` (see `Sink.form`)."""
    if all(map(writes_lines, handlers)):
        return LINE
    if all(map(takes_batches, handlers)):
        return BATCHES
    if all(writes_lines(h) or takes_batches(h) for h in handlers):
        return HELD
    return RECORD


def _held(line: str) -> HeldEvent:
    """Return an event queued as its line alone as a HeldEvent (its capsule read back)."""
    record = as_record(line)
    return HeldEvent(cast(dict[str, Any], record.msg), line, None)


def _items(record: logging.LogRecord) -> list[Any]:
    """Return the events a record carries: those it joins, or itself."""
    return record.items if isinstance(record, LinesRecord) else [record]


class HeldRecords:
    """Records held back by one thread until its block ends, to be queued or written together.

    `room` is what the queues could take when the block began: they only drain meanwhile, so a
    record that fits in it fits in them (unless other threads fill them in the meantime).
    """

    def __init__(self, room: int, form: str = RECORD) -> None:
        """Hold at most `room` records for the calling thread, each in `form` (see `Sink.form`)."""
        self.thread = threading.get_ident()
        self.room = room
        self.form = form
        self.records: list[Queued] = []

    def add(self, record: Queued) -> None:
        """Hold a record; raise QueueFullError when the queues have no room for it."""
        if len(self.records) >= self.room:
            msg = f"the event queue is full ({self.room} more events fitted in it)"
            raise QueueFullError(msg)
        self.records.append(record)


class Sink:
    """Where recorded events go: `handlers`, on the caller's thread or (`background`) a writer's.

    Failures go to `failed_handlers` the same way. One thread at a time may hold its events back
    until a block ends (`batch`), and threads may track on a ticket whether their events were
    written (`tracking`).
    """

    def __init__(self, log: logging.Logger, stamps: Timestamps) -> None:
        """Report handler failures on `log`; time failure descriptions with `stamps`."""
        self.delivery = Delivery(log)
        self.delivery.on_lost = self._describe_loss
        self.handlers: list[logging.Handler] = []
        self.failed_handlers: list[logging.Handler] = []
        self._stamps = stamps
        self._writer: BackgroundWriter | None = None
        self._held: HeldRecords | None = None
        self._form_of: tuple[list[logging.Handler] | None, int, str] = (None, 0, RECORD)
        self._tracking = 0  # how many threads record into a Ticket (see `tracking`)
        self._local = threading.local()
        self._tracking_lock = threading.Lock()

    def use(self, handlers: list[logging.Handler]) -> None:
        """Write to `handlers` from now on; take over their error reporting at once (and give
        plain streams the line formatter), rather than at their first event."""
        for handler in set(self.handlers) - set(handlers):
            self.delivery.unwatch(handler)
        self.handlers = handlers
        for handler in handlers:
            self.delivery.watch(handler)

    def run_in_background(self, background: bool, queue_size: int) -> None:
        """Start the writer threads (queueing at most `queue_size` events), or stop them."""
        if background and self._writer is None:
            self._writer = BackgroundWriter(self.delivery, queue_size)
        elif not background and self._writer is not None:
            self._writer.close()
            self._writer = None

    @property
    def pending(self) -> int:
        """Return how many events wait for the background writer."""
        return self._writer.pending if self._writer is not None else 0

    # Events

    def send(self, capsule: dict[str, Any], line: str | None, key: EventKey | None = None) -> None:
        """Hand a recorded event (and its store `key`, if any) to the handlers (held back within
        this thread's `batch`); its JSON `line` may be None when `wants_lines()` said False."""
        if self._tracking and (ticket := self.ticket) is not None:
            record = CapsuleRecord(RECORD_NAME, capsule, line or _encode(capsule),
                                   None if key is None else key_bytes(key))  # fmt: skip
            record.ticket = ticket
            self._send(ticket.handlers(self.handlers), record)
        elif self._writer is not None or self.handlers:
            held = self._held
            if held is None or held.thread != threading.get_ident():
                self._send(self.handlers, self._queued(capsule, line, key))
            else:
                held.add(self._queued(capsule, line, key, held.form))

    def holder(self) -> Callable[[dict[str, Any], EventKey | None], None] | None:
        """Return how this thread hands an event (its capsule and store key, no line) to its
        `batch` block, as `send` would, when the block is its own, every handler takes
        batches through a background writer and no thread tracks a ticket; else None."""
        held = self._held
        if (
            held is None
            or held.form is not BATCHES
            or held.thread != threading.get_ident()
            or self._writer is None
            or self._tracking
        ):
            return None
        add = held.add

        def hold(capsule: dict[str, Any], key: EventKey | None) -> None:
            add(HeldEvent(capsule, None, key))

        return hold

    def _send(self, handlers: list[logging.Handler], record: Queued) -> None:
        if self._writer is not None:
            self._writer.submit(handlers, record)
        else:
            self.delivery.deliver(handlers, as_record(record))

    def _queued(
        self,
        capsule: dict[str, Any],
        line: str | None,
        key: EventKey | None,
        form: str | None = None,
    ) -> Queued:
        """Return what is handed over for an event, in `form` (default: `form()`; see `Queued`;
        a handler that writes lines reads no store key; a HeldEvent's is hashed by its reader)."""
        form = self.form() if form is None else form
        if form is HELD or form is BATCHES:
            return HeldEvent(capsule, line, key)
        if line is None:  # the handlers changed since the EventLog asked: write it now
            line = _encode(capsule)
        if form is LINE:
            return line
        return CapsuleRecord(RECORD_NAME, capsule, line, None if key is None else key_bytes(key))

    def wants_lines(self) -> bool:
        """Return False when no handler the next event goes to writes lines: every one takes
        batches, through a background writer (not tracked on a ticket)."""
        held = self._held
        if (held is not None and held.form is not BATCHES) or self._tracking:
            return True  # (a line made for nothing, should the block be another thread's)
        mine = held is not None and held.thread == threading.get_ident()
        return (held.form if held is not None and mine else self.form()) is not BATCHES

    def form(self) -> str:
        """Return how a background writer gets events: LINE when every handler writes JSON
        lines, BATCHES when each takes batches (`takes_batches`), HELD when each does one or
        the other, else RECORD (also without a writer).

        Worked out again when the handler list changes (or grows in place). Should a handler
        change meanwhile, it still gets each event: a record is made of a line or a HeldEvent.
        """
        if self._writer is None:
            return RECORD
        handlers = self.handlers
        if self._form_of[0] is not handlers or self._form_of[1] != len(handlers):
            self._form_of = (handlers, len(handlers), _form(handlers))
        return self._form_of[2]

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Hand the events this thread sends in the block to the handlers together, at its end."""
        if self._held is not None:  # nested, or another thread's block: send as usual
            yield
            return
        room = self._writer.room(self.handlers) if self._writer is not None else sys.maxsize
        held = self._held = HeldRecords(room, self.form())
        try:
            yield
        finally:
            self._held = None
            self._release(held.records)

    def _release(self, records: list[Queued]) -> None:
        if not records:
            return
        if self._writer is not None:
            self._writer.submit_many(self.handlers, records)
            return
        for handler in self.handlers:
            self.delivery.deliver_many(handler, records)

    # Failures

    def describe(self, failure: dict[str, Any]) -> None:
        """Write a failure description (no event values) to `failed_handlers`, timed now."""
        if not self.failed_handlers:
            return
        failure = {"__timestamp__": self._stamps.now(), **failure}
        record = CapsuleRecord(FAILED_RECORD_NAME, failure, _encode(failure))
        self._send(self.failed_handlers, record)

    def _describe_loss(
        self, handler: logging.Handler, error: BaseException | None, items: list[Any]
    ) -> None:
        """Describe each event a handler did not write to failed_handlers (never its values)."""
        if not self.failed_handlers:
            return
        reason = f"{type(handler).__name__} did not write the event: {error_name(error)}"
        for item in items:
            if not isinstance(item, (CapsuleRecord, HeldEvent, str)) or (
                as_record(item).name != RECORD_NAME
            ):
                continue  # a lost failure description is counted, not described again
            capsule = cast(Mapping[str, Any], as_record(item).msg)
            self.describe({
                "outcome": SINK_FAILURE, "reason": reason,
                "schema_id": capsule.get("__schema__"),
                "version": capsule.get("__schema_version__"),
                "size": len(as_record(item).line), "field": None,
                "handler": type(handler).__name__,
            })  # fmt: skip

    # Writing it all out

    def flush(self, timeout: float | None = None) -> bool:
        """Write every queued event and flush each handler; return False on timeout."""
        done = self._writer.flush(timeout) if self._writer is not None else True
        self._flush_handlers(self.handlers)
        # Again: writing (and flushing, for a handler that buffers) may have described failures
        # to write, which go to failed_handlers through the writer too.
        if self._writer is not None:
            done = self._writer.flush(timeout) and done
        self._flush_handlers(self.failed_handlers)
        return done

    def _flush_handlers(self, handlers: list[logging.Handler]) -> None:
        for handler in handlers:
            try:
                handler.flush()
            except Exception as e:
                self.delivery.failed(handler, e)

    def close(self, timeout: float | None = None) -> None:
        """Flush, then stop the background writer (the handlers stay open)."""
        self.flush(timeout)
        if self._writer is not None:
            self._writer.close(timeout)
            self._writer = None

    # Tickets

    @contextmanager
    def tracking(self, ticket: Ticket, *, seal: bool = True) -> Iterator[Ticket]:
        """Have the handlers report on `ticket` whether they wrote the events this thread
        sends in the block; the ticket is sealed when the block ends (unless `seal` is False)."""
        if getattr(self._local, "ticket", None) is not None:  # nested: the outer ticket tracks
            yield self._local.ticket
            return
        self._local.ticket = ticket
        with self._tracking_lock:
            self._tracking += 1
        try:
            yield ticket
        finally:
            with self._tracking_lock:
                self._tracking -= 1
            self._local.ticket = None
            if seal:
                self.seal(ticket)

    def seal(self, ticket: Ticket) -> None:
        """Let no more events join `ticket`; it settles once the handlers got past them."""
        if self._writer is not None:
            self._writer.settle(ticket, self.handlers)
        else:
            ticket.seal(0)  # written already, on this thread

    @property
    def ticket(self) -> Ticket | None:
        """Return the ticket that the calling thread's events are tracked by, if any."""
        return getattr(self._local, "ticket", None) if self._tracking else None


def error_name(error: BaseException | None) -> str:
    """Name an error by its type (and errno), never its message: it may hold an event's values."""
    if error is None:
        return "an error"
    code = getattr(error, "errno", None)
    name = errno.errorcode.get(code, "") if isinstance(code, int) else ""
    sqlstate = getattr(error, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate.isalnum():
        name = f"SQLSTATE {sqlstate}"
    return f"{type(error).__name__} {name}".strip()
