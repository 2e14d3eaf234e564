"""Handing recorded events to `logging` handlers, so that one failing handler harms nothing else."""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Union, cast

from . import filesink
from .errors import QueueFullError
from .tickets import Ticket

RECORD_NAME = "jupyter_telemetry_ext.events"
_PROCESS = os.getpid()
_START: float = getattr(logging, "_startTime", time.time())


# What every record shares, set in one step rather than attribute by attribute.
_FIXED_FIELDS: dict[str, Any] = {
    "args": None, "levelname": "INFO", "levelno": logging.INFO, "pathname": "", "filename": "",
    "module": "", "funcName": "", "lineno": 0, "exc_info": None, "exc_text": None,
    "stack_info": None, "threadName": None, "processName": None, "taskName": None,
    "process": _PROCESS,
}  # fmt: skip


class CapsuleRecord(logging.LogRecord):
    """A log record whose `msg` is the capsule (a dict) and whose message is its JSON line.

    Formatters that use `%(message)s` (and handlers without a formatter) write the JSON line;
    handlers that read `record.msg` (as OpenTelemetry's does) get the structured capsule.
    Without a capsule (None), `msg` is read back from the line when first asked for: a record
    waiting for a writer thread then holds no dict for the garbage collector to go through.
    """

    def __init__(self, logger_name: str, capsule: Mapping[str, Any] | None, line: str) -> None:
        """Fill in what formatters read, without the stack inspection of `Logger.makeRecord`."""
        self.__dict__.update(_FIXED_FIELDS)
        self.name = logger_name
        if capsule is not None:
            self.msg = capsule
        self.line = line
        self.created = created = time.time()
        self.msecs = (created - int(created)) * 1000.0
        self.relativeCreated = (created - _START) * 1000.0
        self.thread = threading.get_ident()

    def __getattr__(self, name: str) -> Any:
        """Read `msg` back from the JSON line when the record was made without its capsule."""
        if name != "msg":
            raise AttributeError(name)
        self.msg = json.loads(self.line)
        return self.msg

    @property
    def schema_id(self) -> str:
        """Return the id of the event's schema ("" for other records)."""
        capsule = self.msg
        return str(capsule.get("__schema__", "")) if isinstance(capsule, Mapping) else ""

    def getMessage(self) -> str:  # noqa: N802 (logging's name)
        """Return the capsule as one line of JSON."""
        return self.line


# A queued event: its record, or only its JSON line when every handler writes lines (a string
# is no work for the garbage collector, and needs no record until a handler wants one).
Queued = Union[CapsuleRecord, str]  # noqa: UP007 - a runtime alias


def as_record(item: Queued) -> CapsuleRecord:
    """Return the record of a queued event."""
    return item if isinstance(item, CapsuleRecord) else CapsuleRecord(RECORD_NAME, None, item)


class LinesRecord(CapsuleRecord):
    """Several events written at once: their JSON lines, one after the other."""

    def __init__(self, items: list[Queued]) -> None:
        """Join the events' lines (the last one gives the name and `msg`)."""
        lines = [item if type(item) is str else cast(CapsuleRecord, item).line for item in items]
        last = items[-1]
        super().__init__(last.name if isinstance(last, CapsuleRecord) else RECORD_NAME, None,
                         "\n".join(lines))  # fmt: skip
        self.items = items

    def __getattr__(self, name: str) -> Any:
        """Give the last event's `msg`."""
        if name != "msg":
            raise AttributeError(name)
        return as_record(self.items[-1]).msg


def writes_lines(handler: logging.Handler) -> bool:
    """Return True for a stream handler that writes each record's JSON line and nothing else."""
    return (
        isinstance(handler, logging.StreamHandler)
        and handler.formatter is LINE_FORMATTER
        and not handler.filters
    )


class LineFormatter(logging.Formatter):
    """Formats a record as its message alone: the event's JSON line, with no other work."""

    def format(self, record: logging.LogRecord) -> str:
        """Return the record's message."""
        return record.getMessage()


LINE_FORMATTER = LineFormatter()


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

    def deliver(self, handlers: Iterable[logging.Handler], record: CapsuleRecord) -> None:
        """Hand the record to every handler whose level lets it through."""
        for handler in handlers:
            self._deliver(handler, record)

    def deliver_many(self, handler: logging.Handler, items: list[Queued]) -> None:
        """Hand events to one handler: as one write of all their lines when it writes lines."""
        if handler not in self._watched:
            self.watch(handler)  # first: it may give the handler its line formatter
        if writes_lines(handler) and (len(items) > 1 or type(items[0]) is str):
            self._deliver(handler, LinesRecord(items))
        else:
            for item in items:
                self._deliver(handler, as_record(item))

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
            stream, start = handler.stream, filesink.position(handler)
            try:
                handler.emit(record)
            except Exception as e:
                self._errors[handler] = e
            error = self._errors.pop(handler, _NO_ERROR)
            if error is _NO_ERROR:
                return
            if handler.stream is not stream and stream is not None:
                start = 0  # the handler rolled over to a new file before writing
            lost = self._settle(handler, record, start)
        finally:
            handler.release()
        self._lost(handler, error, lost)

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
                if not isinstance(item, (CapsuleRecord, str)):
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

    def settle(self, handler: logging.Handler, ticket: Ticket) -> None:
        """Tell `ticket` that `handler` got past its events, flushing a handler that buffers."""
        if not isinstance(handler, logging.StreamHandler):  # a stream flushes at each write
            try:
                handler.flush()
            except Exception as e:
                ticket.failed(handler)
                self.failed(handler, e)
        ticket.done()


_NO_ERROR = BaseException()  # no error was held for the handler


def _items(record: logging.LogRecord) -> list[Any]:
    """Return the events a record carries: those it joins, or itself."""
    return record.items if isinstance(record, LinesRecord) else [record]


class HeldRecords:
    """Records held back by one thread until its block ends, to be queued or written together.

    `room` is what the queues could take when the block began: they only drain meanwhile, so a
    record that fits in it fits in them (unless other threads fill them in the meantime).
    """

    def __init__(self, room: int, lines_only: bool = False) -> None:
        """Hold at most `room` records for the calling thread (`lines_only`: without capsules)."""
        self.thread = threading.get_ident()
        self.room = room
        self.lines_only = lines_only
        self.records: list[Queued] = []

    def add(self, record: Queued) -> None:
        """Hold a record; raise QueueFullError when the queues have no room for it."""
        if len(self.records) >= self.room:
            msg = f"the event queue is full ({self.room} more events fitted in it)"
            raise QueueFullError(msg)
        self.records.append(record)


_Item = Union[Queued, threading.Event, Ticket, None]  # noqa: UP007 - a runtime alias
WRITE_CHUNK = 1000  # records joined into one write, at most
# Seconds a woken writer waits before writing, so that records arriving together share a write
# (and the request thread is interrupted less often). A flush or a stop cuts it short.
LINGER = 0.01


class _Lane:
    """One handler's queue and thread: a handler that blocks holds up no other handler.

    The thread writes whatever queued up since it last looked: for a plain stream handler
    (a file, stderr) that is one write and one flush for all of it.
    """

    def __init__(self, delivery: Delivery, handler: logging.Handler, size: int) -> None:
        self.delivery, self.handler, self.size = delivery, handler, size
        self.items: deque[_Item] = deque()
        self.wake = threading.Event()
        self.hurry = threading.Event()  # set by a flush mark or a stop: no lingering
        self.thread = threading.Thread(target=self._run, name="telemetry-writer", daemon=True)
        self.thread.start()

    def put(self, item: _Item) -> None:
        """Queue an event (or a flush mark, or None to stop) and wake the thread."""
        self.items.append(item)
        if item is None or isinstance(item, (threading.Event, Ticket)):
            self.hurry.set()
        if not self.wake.is_set():
            self.wake.set()

    def put_many(self, records: list[Queued]) -> None:
        """Queue records and wake the thread once."""
        self.items.extend(records)
        if not self.wake.is_set():
            self.wake.set()

    def _run(self) -> None:
        while True:
            self.wake.wait()
            self.hurry.wait(LINGER)  # let a few more records come: fewer, larger writes
            self.hurry.clear()
            self.wake.clear()  # before draining: a record queued from now on wakes us again
            if not self._drain():
                return

    def _drain(self) -> bool:
        """Write everything queued; return False when told to stop."""
        events: list[Queued] = []
        while self.items:
            item = self.items.popleft()
            mark = item is None or isinstance(item, (threading.Event, Ticket))
            if not mark and len(events) < WRITE_CHUNK:
                events.append(cast(Queued, item))
                continue
            self._write(events)
            events = [] if mark else [cast(Queued, item)]
            if item is None:
                return False
            if isinstance(item, threading.Event):
                item.set()  # every event queued before the mark is written
            elif isinstance(item, Ticket):
                self.delivery.settle(self.handler, item)
        self._write(events)
        return True

    def _write(self, events: list[Queued]) -> None:
        if events:
            self.delivery.deliver_many(self.handler, events)


class BackgroundWriter:
    """Delivers records on threads of their own, one per handler, never on the caller's."""

    def __init__(self, delivery: Delivery, size: int) -> None:
        """Deliver through `delivery`, queueing at most `size` records for each handler."""
        self._delivery = delivery
        self._size = size
        self._lanes: dict[logging.Handler, _Lane] = {}
        self._lock = threading.Lock()

    @property
    def pending(self) -> int:
        """Return how many records wait to be written (by the slowest handler)."""
        return max((len(lane.items) for lane in list(self._lanes.values())), default=0)

    def submit(self, handlers: Callable[[], list[logging.Handler]], record: Queued) -> None:
        """Queue a record for each of `handlers()`; raise QueueFullError if any queue is full."""
        with self._lock:
            lanes = [self._lanes.get(handler) or self._lane(handler) for handler in handlers()]
            for lane in lanes:
                if len(lane.items) >= self._size:
                    msg = (
                        f"the event queue is full ({self._size} events waiting for a slow handler)"
                    )
                    raise QueueFullError(msg)
            for lane in lanes:
                lane.put(record)

    def room(self, handlers: list[logging.Handler]) -> int:
        """Return how many more records the fullest queue of `handlers` takes now."""
        with self._lock:
            lanes = [self._lanes.get(handler) for handler in handlers]
            return min((self._size - len(lane.items) if lane else self._size for lane in lanes),
                       default=self._size)  # fmt: skip

    def submit_many(
        self, handlers: Callable[[], list[logging.Handler]], records: list[Queued]
    ) -> None:
        """Queue records for each of `handlers()`; their room was taken earlier (HeldRecords)."""
        with self._lock:
            lanes = [self._lane(handler) for handler in handlers()]
            for lane in lanes:
                lane.put_many(records)

    def _lane(self, handler: logging.Handler) -> _Lane:
        lane = self._lanes.get(handler)
        if lane is None:
            lane = self._lanes[handler] = _Lane(self._delivery, handler, self._size)
        return lane

    def settle(self, ticket: Ticket, handlers: list[logging.Handler]) -> None:
        """Have each of `handlers` tell `ticket` once it got past every record queued so far."""
        with self._lock:
            lanes = [self._lane(handler) for handler in handlers]
        ticket.seal(len(lanes))
        for lane in lanes:
            lane.put(ticket)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every record queued so far is written; return False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        marks = []
        for lane in list(self._lanes.values()):
            if not lane.thread.is_alive():
                if lane.items:
                    return False
                continue
            done = threading.Event()
            lane.put(done)
            marks.append(done)
        return all(done.wait(_left(deadline)) for done in marks)

    def close(self, timeout: float | None = None) -> None:
        """Write what is queued, then stop the threads."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for lane in list(self._lanes.values()):
            if lane.thread.is_alive():
                lane.put(None)
                lane.thread.join(_left(deadline))


def _left(deadline: float | None) -> float | None:
    """Return the seconds left until `deadline` (None: no deadline)."""
    return None if deadline is None else max(0.0, deadline - time.monotonic())
