"""One POST of a batch of events to the collector, and what its reply says about each event.

Blocking (`http.client`): it runs on the forwarder's sender thread, never on the event loop.
"""

from __future__ import annotations

import gzip
import http.client
import json
from dataclasses import dataclass
from urllib.parse import urlsplit

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
        """Post to `{collector_url}api/telemetry/events` with `Authorization: token <token>`."""
        url = urlsplit(collector_url)
        self.https = url.scheme == "https"
        self.host, self.port = url.hostname or "127.0.0.1", url.port
        self.root = url.path or "/"
        self.path = self.root + EVENTS_PATH
        self.timeout = timeout
        self._token = token  # never logged
        self._connection: http.client.HTTPConnection | None = None
        self.rules: CollectorRules | None = None  # the listing's rules, once read whole

    def post(self, body: bytes) -> Reply:
        """Send one batch; raise OSError (or http.client.HTTPException) when no reply came."""
        data, headers = encoded(body)
        status, retry_after, payload = self._request("POST", self.path, data, headers)
        return read_reply(status, retry_after, payload)

    def announced(self) -> Announced | None:
        """Return what the collector's `GET api/telemetry/schemas` says it records of each
        schema id (None when it does not answer 200 with that list); raise OSError.

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
        if self._token:
            headers["Authorization"] = f"token {self._token}"
        connection = self._connect()
        try:
            connection.request(method, path, data, headers)
            response = connection.getresponse()
            payload = response.read()
        except BaseException:
            self.close()
            raise
        return response.status, response.getheader("Retry-After"), payload

    def _connect(self) -> http.client.HTTPConnection:
        if self._connection is None:
            kind = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
            self._connection = kind(self.host, self.port, timeout=self.timeout)
        return self._connection

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
    except (ValueError, AttributeError):
        return None
    if not isinstance(schemas, list):
        return None
    announced: Announced = {}
    for schema in schemas:
        if isinstance(schema, dict) and isinstance(schema.get("id"), str):
            sampling = schema.get("sampling", 1.0)
            rate = float(sampling) if isinstance(sampling, (int, float)) else 1.0
            announced[schema["id"]] = (schema.get("allowed") is True, rate)
    return announced


def _seconds(value: str | None) -> float | None:
    """Return a `Retry-After` in seconds (an HTTP date is not expected from our API: ignored)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)
