"""One POST of a batch of events to the collector, and what its reply says about each event.

Blocking (`http.client`): it runs on the forwarder's sender thread, never on the event loop.
A collector (or whatever answers in its place) is not trusted: a reply is read up to
MAX_REPLY_BYTES, and each request has a total deadline, so that a reply dripping a byte at a
time is cut off although no single read times out.
"""

from __future__ import annotations

import contextlib
import gzip
import http.client
import json
import math
import socket
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from jupyter_telemetry_ext.core.errors import ReplyDeadlineError, ReplyTooLargeError
from jupyter_telemetry_ext.core.outcomes import REPLY_OUTCOMES
from jupyter_telemetry_ext.core.timestamps import format_timestamp
from jupyter_telemetry_ext.server.rules import CollectorRules, read_rules

EVENTS_PATH = "api/telemetry/events"
SCHEMAS_PATH = "api/telemetry/schemas"
# What the collector records of each schema id: whether its allow-list allows it, its sampling.
Announced = dict[str, tuple[bool, float]]
# Below this many bytes a body is sent as is: gzip would save little and cost a header.
GZIP_MIN_BYTES = 1024
GZIP_LEVEL = 1  # on batches of events: about 0.22 of the size (level 6: 0.18) in half the time
DONE_STATUSES = frozenset(REPLY_OUTCOMES)  # the collector decided: no retry
MAX_RETRY_AFTER = 3600.0
MAX_REPLY_BYTES = 1 << 20  # a collector's reply is a few bytes per event: 1 MiB is far beyond
# What a request on a kept-alive connection raises when the other end had closed it meanwhile
# (proxies close idle connections): sent again once, on a new connection.
STALE_CONNECTION_ERRORS = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)


@dataclass(frozen=True)
class Reply:
    """The collector's answer: status, `Retry-After` in seconds, each event's status, a message."""

    status: int
    retry_after: float | None = None
    statuses: list[str] | None = None
    errors: list[str | None] | None = None
    message: str = ""


def batch_body(lines: list[bytes]) -> bytes:
    """Return the batch `{"events": [...], "sent_at": now}` of events already in JSON."""
    sent_at = json.dumps(format_timestamp()).encode()
    return b'{"events":[' + b",".join(lines) + b'],"sent_at":' + sent_at + b"}"


def encoded(body: bytes) -> tuple[bytes, dict[str, str]]:
    """Return the body to send (gzipped when it pays) and its content headers."""
    headers = {"Content-Type": "application/json"}
    if len(body) < GZIP_MIN_BYTES:
        return body, headers
    headers["Content-Encoding"] = "gzip"
    return gzip.compress(body, compresslevel=GZIP_LEVEL, mtime=0), headers


class Uplink:
    """A keep-alive HTTP connection to the collector's `api/telemetry/events`."""

    def __init__(self, collector_url: str, token: str, timeout: float) -> None:
        """Post to `{collector_url}api/telemetry/events` with `Authorization: token <token>`;
        each request, its reply read, within `timeout` seconds in total."""
        url = urlsplit(collector_url)
        self.https = url.scheme == "https"
        self.host, self.port = url.hostname or "127.0.0.1", url.port
        self.root = url.path if url.path.endswith("/") else url.path + "/"
        self.path = self.root + EVENTS_PATH
        self.timeout = timeout
        self.reconnects = 0  # requests sent again after a kept-alive connection was closed
        self._token = token  # never logged
        self._connection: http.client.HTTPConnection | None = None
        self.rules: CollectorRules | None = None  # the listing's rules, once read whole
        self._reused = False  # the connection has answered a request before
        self._expired = threading.Event()

    def post(self, body: bytes) -> Reply:
        """Send one batch; raise OSError, http.client.HTTPException or ReplyError when no
        reply came or it cannot be read."""
        data, headers = encoded(body)
        status, retry_after, payload = self._request("POST", self.path, data, headers)
        return read_reply(status, retry_after, payload)

    def announced(self) -> Announced | None:
        """Return what the collector's `GET api/telemetry/schemas` says it records of each
        schema id (None when it does not answer 200 with that list); raise as `post` does.

        A 200 also sets `rules`: what the collector records of each schema (None: unreadable).
        """
        status, _, payload = self._request("GET", self.root + SCHEMAS_PATH, None, {})
        if status != 200:
            return None
        self.rules = read_rules(payload)
        return read_announced(payload)

    def _request(
        self, method: str, path: str, data: bytes | None, headers: dict[str, str]
    ) -> tuple[int, str | None, bytes]:
        """Send a request within the deadline, again once on a new connection when the kept-alive
        one turns out closed."""
        if self._token:
            headers["Authorization"] = f"token {self._token}"
        deadline = time.monotonic() + self.timeout
        self._expired.clear()
        watchdog = threading.Timer(self.timeout, self._expire)
        watchdog.daemon = True
        watchdog.start()
        try:
            try:
                return self._attempt(method, path, data, headers, deadline)
            except STALE_CONNECTION_ERRORS:
                if not self._reused or self._expired.is_set():
                    raise
            self.reconnects += 1
            return self._attempt(method, path, data, headers, deadline)
        except (OSError, http.client.HTTPException, ValueError) as e:
            if self._expired.is_set():
                msg = f"no complete reply within {self.timeout:g} s"
                raise ReplyDeadlineError(msg) from e
            raise
        finally:
            watchdog.cancel()

    def _attempt(
        self,
        method: str,
        path: str,
        data: bytes | None,
        headers: dict[str, str],
        deadline: float,
    ) -> tuple[int, str | None, bytes]:
        """Send the request once and read the reply (closing the connection on any error)."""
        connection = self._connect(deadline)
        try:
            connection.request(method, path, data, headers)
            if self._expired.is_set():  # while connecting: no socket to shut down then
                raise ConnectionAbortedError
            if connection.sock is not None:  # connected within what was left: reads get it all
                connection.sock.settimeout(self.timeout)
            response = connection.getresponse()
            payload = response.read(MAX_REPLY_BYTES + 1)
            if len(payload) > MAX_REPLY_BYTES:
                msg = f"the collector's reply is larger than {MAX_REPLY_BYTES} bytes"
                raise ReplyTooLargeError(msg)
        except BaseException:
            self.close()
            raise
        if response.will_close:
            self.close()
        self._reused = True
        return response.status, response.getheader("Retry-After"), payload

    def _connect(self, deadline: float) -> http.client.HTTPConnection:
        """Return the kept-alive connection, or a new one that connects within the deadline."""
        if self._connection is None:
            kind = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
            timeout = max(0.001, deadline - time.monotonic())
            self._connection, self._reused = kind(self.host, self.port, timeout=timeout), False
        return self._connection

    def _expire(self) -> None:
        """Cut the request off at its deadline: shut the socket a read may be blocked on."""
        self._expired.set()
        connection = self._connection
        sock = connection.sock if connection is not None else None
        if sock is not None:
            # the plain socket's shutdown, also under TLS: the blocked reader gets end-of-file
            with contextlib.suppress(OSError):  # already closed
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def close(self) -> None:
        """Close the connection (the next post opens a new one)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def read_reply(status: int, retry_after: str | None, payload: bytes) -> Reply:
    """Return what a reply says: its statuses when it is a batch reply, else its message."""
    wait = _seconds(retry_after)
    try:
        model = json.loads(payload) if payload else None
    except ValueError:
        model = None
    if not isinstance(model, dict):
        return Reply(status, wait)
    message = str(model.get("message", ""))[:200]
    results = model.get("results")
    if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
        return Reply(status, wait, message=message)
    statuses = [str(r.get("status")) for r in results]
    errors = [r.get("error") if isinstance(r.get("error"), str) else None for r in results]
    return Reply(status, wait, statuses, errors, message)


def read_announced(payload: bytes) -> Announced | None:
    """Return `{schema_id: (allowed, sampling)}` from a schema listing (None if malformed)."""
    try:
        schemas = json.loads(payload).get("schemas")
    except (ValueError, AttributeError, RecursionError):  # nested too deep: malformed as well
        return None
    if not isinstance(schemas, list):
        return None
    announced: Announced = {}
    for schema in schemas:
        if isinstance(schema, dict) and isinstance(schema.get("id"), str):
            rate = sampling_rate(schema.get("sampling", 1.0))
            announced[schema["id"]] = (schema.get("allowed") is True, rate)
    return announced


def sampling_rate(value: object) -> float:
    """Return a listed sampling rate within [0, 1]; 1.0 for what is not a finite number
    (NaN, a string, an integer too large for a float)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return 1.0
    try:
        rate = float(value)
    except OverflowError:
        return 1.0
    return min(max(rate, 0.0), 1.0) if math.isfinite(rate) else 1.0


def _seconds(value: str | None) -> float | None:
    """Return a `Retry-After` in seconds (an HTTP date is not expected from our API: ignored)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)
