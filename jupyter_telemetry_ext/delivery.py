"""Handing recorded events to `logging` handlers, so that one failing handler harms nothing else."""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

_PROCESS = os.getpid()
_START: float = getattr(logging, "_startTime", time.time())


class CapsuleRecord(logging.LogRecord):
    """A log record whose `msg` is the capsule (a dict) and whose message is its JSON line.

    Formatters that use `%(message)s` (and handlers without a formatter) write the JSON line;
    handlers that read `record.msg` (as OpenTelemetry's does) get the structured capsule.
    """

    def __init__(self, logger_name: str, capsule: Mapping[str, Any], line: str) -> None:
        """Fill in what formatters read, without the stack inspection of `Logger.makeRecord`."""
        self.name = logger_name
        self.msg = capsule
        self.args = None
        self.levelname = "INFO"
        self.levelno = logging.INFO
        self.pathname = self.filename = self.module = self.funcName = ""
        self.lineno = 0
        self.exc_info = self.exc_text = self.stack_info = None
        self.created = time.time()
        self.msecs = (self.created - int(self.created)) * 1000.0
        self.relativeCreated = (self.created - _START) * 1000.0
        self.thread = threading.get_ident()
        self.threadName = self.processName = self.taskName = None
        self.process = _PROCESS
        self.line = line

    @property
    def schema_id(self) -> str:
        """Return the id of the event's schema."""
        return str(cast("Mapping[str, Any]", self.msg).get("__schema__", ""))

    def getMessage(self) -> str:  # noqa: N802 (logging's name)
        """Return the capsule as one line of JSON."""
        return self.line


class LineFormatter(logging.Formatter):
    """Formats a record as its message alone: the event's JSON line, with no other work."""

    def format(self, record: logging.LogRecord) -> str:
        """Return the record's message."""
        return record.getMessage()


LINE_FORMATTER = LineFormatter()


class Delivery:
    """Calls each handler in turn; counts each handler's failures and logs the first one."""

    def __init__(self, log: logging.Logger) -> None:
        """Report handler failures on `log`."""
        self.log = log
        self.failures: Counter[logging.Handler] = Counter()
        self.schema_failures: Counter[str] = Counter()
        self._watched: set[logging.Handler] = set()

    def deliver(self, handlers: Iterable[logging.Handler], record: CapsuleRecord) -> None:
        """Hand the record to every handler whose level lets it through."""
        for handler in handlers:
            if handler not in self._watched:
                self.watch(handler)
            try:
                if record.levelno >= handler.level:
                    handler.handle(record)
            except Exception as e:
                self.failed(handler, e, record)

    def watch(self, handler: logging.Handler) -> None:
        """Route the handler's own error reporting (`handleError`) to our failure count."""

        def handle_error(record: logging.LogRecord) -> None:
            self.failed(handler, None, record)

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
        """Count one failure (per handler and per schema); log each handler's first one."""
        self.failures[handler] += 1
        if isinstance(record, CapsuleRecord):
            self.schema_failures[record.schema_id] += 1
        if self.failures[handler] == 1:
            self.log.error(
                "Event handler %r failed; its later failures are counted, not logged",
                handler,
                exc_info=error or True,
            )


_Item = tuple[Callable[[], list[logging.Handler]], CapsuleRecord]


class QueueFullError(RuntimeError):
    """The background writer's queue is full: the event was not accepted."""


class BackgroundWriter:
    """Delivers records on a thread of its own, so that a slow handler never blocks the caller."""

    def __init__(self, delivery: Delivery, size: int) -> None:
        """Deliver through `delivery`, queueing at most `size` records."""
        self._delivery = delivery
        self._queue: queue.Queue[_Item | threading.Event | None] = queue.Queue(size)
        self._thread = threading.Thread(target=self._run, name="telemetry-writer", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Return how many records wait to be written."""
        return self._queue.qsize()

    def submit(self, handlers: Callable[[], list[logging.Handler]], record: CapsuleRecord) -> None:
        """Queue a record for `handlers()`; raise QueueFullError when the queue is full."""
        try:
            self._queue.put_nowait((handlers, record))
        except queue.Full:
            msg = (
                f"the event queue is full ({self._queue.maxsize} events waiting for slow handlers)"
            )
            raise QueueFullError(msg) from None

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every record queued so far is written; return False on timeout."""
        if not self._thread.is_alive():
            return self._queue.empty()
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout)

    def close(self, timeout: float | None = None) -> None:
        """Write what is queued, then stop the thread."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if isinstance(item, threading.Event):
                item.set()
            else:
                handlers, record = item
                self._delivery.deliver(handlers(), record)
