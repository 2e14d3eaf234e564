"""The published REST contract, fuzzed with schemathesis, and a hostile corpus: a real server."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from jupyter_telemetry_ext.server.restapi import DRAIN_BYTES
from tests.servers import TOKEN, Server, read_events, write_config

AUTH = {"Authorization": f"token {TOKEN}"}
EVENT = {"schema_id": "test.frontend/example", "version": 1, "data": {"action": "open"}}
LIMIT = 1 << 20
CONFIG = """
import logging
c.ServerApp.jpserver_extensions = {{"jupyter_telemetry_ext": True}}
c.TelemetryExtension.schema_paths = [{schemas!r}]
c.TelemetryExtension.rate_limit = 0  # the fuzzer sends far more than a frontend
c.TelemetryExtension.reply_after_write = True  # a 2xx means written: the file is exact
c.EventLog.handlers = [logging.FileHandler({events!r})]
c.EventLog.allowed_schemas = ["test.frontend/example"]
"""
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One `jupyter server` for the module, recording into `events.jsonl`."""
    tmp_path = tmp_path_factory.mktemp("contract")
    write_config(tmp_path, CONFIG, events=str(tmp_path / "events.jsonl"))
    started = Server(tmp_path)
    yield started
    assert started.stop(signal.SIGTERM) == 0


def recorded(server: Server) -> list[dict[str, Any]]:
    """Return what the server wrote (exact: it answers after writing)."""
    return read_events(server.log.parent / "events.jsonl")


def raw(server: Server, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """POST raw bytes to api/telemetry/events; return status and JSON reply.

    A body over the limit is announced with `Expect: 100-continue` and not sent, as careful
    clients do: the server answers 413 from the headers alone (sending it anyway races the
    server closing the connection).
    """
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        all_headers = {**AUTH, "Content-Type": "application/json", **(headers or {})}
        if len(body) > LIMIT:
            connection.putrequest("POST", "/api/telemetry/events")
            for name, value in {**all_headers, "Content-Length": str(len(body)),
                                "Expect": "100-continue"}.items():  # fmt: skip
                connection.putheader(name, value)
            connection.endheaders()
        else:
            connection.request("POST", "/api/telemetry/events", body, all_headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        connection.close()


# The contract


def test_rest_api_description_is_shipped_and_covers_every_route() -> None:
    from jupyter_telemetry_ext.dashboard.server_handlers import (
        dashboard_handlers,
        dashboard_page_handlers,
    )
    from jupyter_telemetry_ext.server.consent_routes import consent_handlers
    from jupyter_telemetry_ext.server.page import page_handlers
    from jupyter_telemetry_ext.server.routes import default_handlers

    spec = yaml.safe_load((files("jupyter_telemetry_ext") / "rest-api.yml").read_text())
    assert spec["openapi"].startswith("3.")
    routes = {
        url.replace("(?P<schema_id>.+)", "{schema_id}").replace("(?P<view>.+)", "{view}")
        for url, _ in default_handlers + dashboard_handlers
    }
    consent = {url.replace("(?P<study>[^/]+)", "{study}") for url, _ in consent_handlers}
    pages = {url for url, _ in page_handlers + dashboard_page_handlers}
    assert set(spec["paths"]) == routes | consent | pages
    from hatchling.builders.wheel import WheelBuilder

    root = Path(__file__).resolve().parent.parent
    in_wheel = {f.distribution_path for f in WheelBuilder(str(root)).recurse_included_files()}
    assert "jupyter_telemetry_ext/rest-api.yml" in in_wheel


# The hostile corpus: each gets its 4xx, the server stays up, nothing is recorded


def nested(depth: int) -> bytes:
    """Return an event whose data nests `depth` objects."""
    inner = '{"a": ' * depth + "1" + "}" * depth
    return (
        '{"schema_id": "test.frontend/example", "version": 1, "data": {"model": ' + inner + "}}"
    ).encode()


def dumps(value: Any) -> bytes:
    """Return compact JSON."""
    return json.dumps(value).encode()


WRONG = [None, True, 1, 1.5, "x", [], {}]
HOSTILE = [
    pytest.param(nested(10_000), 400, "nested more than 64", id="nesting-10000"),
    pytest.param(nested(900), 400, "nested more than 64", id="nesting-900"),
    pytest.param(nested(70), 400, "nested more than 64", id="nesting-70"),
    pytest.param(dumps({**EVENT, "data": {"action": "open", "count": 10**30}}), 400, "I-JSON",
                 id="huge-integer"),
    pytest.param(b'{"schema_id": "a", "version": 1, "data": {"count": 1' + b"0" * 5000 + b"}}",
                 400, "not valid JSON", id="integer-5000-digits"),
    pytest.param(b'{"schema_id": "a", "version": 1, "data": {"count": 1e400}}', 400, "64-bit",
                 id="float-overflow"),
    pytest.param(dumps({**EVENT, "data": {"action": "open", "path": "x" * 100_000}}), 413,
                 "max_event_size", id="huge-string"),
    pytest.param(b"[" + b'"' + b"x" * (LIMIT + 10) + b'"]', 413, "max_body_size", id="huge-body"),
    pytest.param(b'{"schema_id": "a", "version": 1, "data": {"n": NaN}}', 400, "NaN", id="nan"),
    pytest.param(b'{"schema_id": "a", "version": 1, "data": {"n": -Infinity}}', 400, "Infinity",
                 id="infinity"),
    pytest.param(b'{"schema_id": "\xff\xfe", "version": 1, "data": {}}', 400, "not valid JSON",
                 id="invalid-utf8"),
    pytest.param(b'{"schema_id": "\xed\xa0\x80", "version": 1, "data": {}}', 400,
                 "not valid JSON", id="utf8-surrogate"),
    pytest.param(b'{"schema_id": "a", "version": 1, "data": {"s": "\\ud800"}}', 400,
                 "lone surrogate", id="escaped-surrogate"),
    pytest.param('{"schema_id": "a", "version": 1, "data": {}}'.encode("utf-16"), 400,
                 "not valid JSON", id="utf-16"),
    pytest.param(b'{"schema_id": "x", "schema_id": "test.frontend/example", "version": 1, '
                 b'"data": {"action": "open"}}', 400, "duplicate key", id="duplicate-keys"),
    pytest.param(b'{"schema_id": "test.frontend/example", "version": 1, '
                 b'"data": {"action": "open", "action": "close"}}', 400, "duplicate key",
                 id="duplicate-data-keys"),
    pytest.param(dumps({**EVENT, "__timestamp__": "x"}), 400, "unknown field", id="__-envelope"),
    pytest.param(dumps({**EVENT, "data": {"action": "open", "__schema__": "x"}}), 400, "reserved",
                 id="__-data"),
    pytest.param(dumps({**EVENT, "data": {"action": "open", "model": {"__x": 1}}}), 400,
                 "reserved", id="__-nested"),
    pytest.param(dumps({**EVENT, "data": {"action": "open", "model": {"paths": [{"__x": 1}]}}}),
                 400, "data.model.paths[0]", id="__-in-array"),
    pytest.param(dumps({"events": [EVENT], "__x": 1}), 400, "unknown field", id="__-batch"),
    pytest.param(dumps({"events": []}), 400, "the batch is empty", id="empty-batch"),
    pytest.param(dumps({"events": [1, "x", None, [], True]}), 400, "every event", id="non-objects"),
    pytest.param(dumps({"events": [EVENT] * 501}), 413, "max_batch_events", id="batch-too-long"),
    pytest.param(b"", 400, "not valid JSON", id="empty-body"),
    pytest.param(b"null", 400, "must be a JSON object", id="null-body"),
    *(
        pytest.param(
            dumps({**EVENT, name: value}), 400, f"{name}: ", id=f"{name}-{type(value).__name__}"
        )
        for name in ("schema_id", "version", "data", "timestamp", "id", "sent_at")
        for value in WRONG
        if not (name == "data" and value == {})
        and not (name in ("timestamp", "id", "sent_at") and value is None)
        and not (name == "version" and type(value) is int)
        and not (name == "schema_id" and value == "x")
        and not (name in ("version", "id") and value == "x")
    ),
    *(
        pytest.param(dumps({"events": value}), 400, "events: ", id=f"events-{type(value).__name__}")
        for value in WRONG
        if value != []
    ),
]  # fmt: skip


@pytest.mark.e2e
@pytest.mark.parametrize(("body", "status", "message"), HOSTILE)
def test_hostile_body(server: Server, body: bytes, status: int, message: str) -> None:
    code, reply = raw(server, body)
    assert (code, message in reply["message"]) == (status, True), reply
    assert server.request("GET", "/api/telemetry/schemas")[0] == 200
    assert recorded(server) == []


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("content_type", "status"),
    [
        ("multipart/form-data; boundary=xyz", 415),
        ("text/csv", 415),
        ("text/plain; charset=latin-1", 415),
        ("application/xml", 415),
        ("application/json; charset=utf-16", 415),
        ("application/json", 400),  # says JSON, is a form
    ],
)
def test_content_type_lies(server: Server, content_type: str, status: int) -> None:
    body = b"schema_id=test.frontend%2Fexample&version=1" if status == 400 else dumps(EVENT)
    code, reply = raw(server, body, {"Content-Type": content_type})
    assert code == status, reply
    assert recorded(server) == []


def send_headers(server: Server, headers: str) -> socket.socket:
    """Open a connection and send a POST's request line and headers."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    head = f"POST /api/telemetry/events HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}"
    sock.sendall(f"{head}Authorization: token {TOKEN}\r\n\r\n".encode())
    return sock


def status_of(sock: socket.socket) -> int:
    """Read the response's status; the body has not been (fully) sent."""
    with sock:
        return int(sock.recv(65536).split(b" ", 2)[1])


@pytest.mark.e2e
def test_an_announced_oversized_body_is_refused_before_it_is_sent(server: Server) -> None:
    sock = send_headers(server, f"Content-Length: {10**9}\r\n")
    assert status_of(sock) == 413
    assert recorded(server) == []


@pytest.mark.e2e
def test_a_chunked_body_over_the_limit_is_refused_once_sent(server: Server) -> None:
    """The refused body is read (not kept) to its end before the 413: a proxy in front relays
    an answer to a request it finished sending, but not one that cut it short."""
    sock = send_headers(server, "Transfer-Encoding: chunked\r\n")
    chunk = b"x" * (64 << 10)
    for _ in range(2 * LIMIT // len(chunk)):
        sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    sock.sendall(b"0\r\n\r\n")
    assert status_of(sock) == 413
    assert server.request("GET", "/api/telemetry/schemas")[0] == 200


@pytest.mark.e2e
def test_a_chunked_body_that_goes_on_is_refused_past_what_is_read_of_it(server: Server) -> None:
    sock = send_headers(server, "Transfer-Encoding: chunked\r\n")
    chunk = b"x" * (64 << 10)
    for _ in range(DRAIN_BYTES // len(chunk) + 1):  # just past it, never the final chunk
        sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    assert status_of(sock) == 413
    assert server.request("GET", "/api/telemetry/schemas")[0] == 200


@pytest.mark.e2e
def test_the_corpus_server_still_records_good_events(server: Server) -> None:
    assert raw(server, dumps({"events": [EVENT]}))[0] == 200
    assert [capsule["action"] for capsule in recorded(server)] == ["open"]


# Fuzzing (last: it may record what it generates)


@pytest.mark.e2e
@pytest.mark.timeout(480)  # every route, the dashboard's included, 300 cases each way
def test_schemathesis_against_the_real_server(server: Server) -> None:
    path = Path(str(files("jupyter_telemetry_ext") / "rest-api.yml"))
    schema = schemathesis.openapi.from_path(path)
    base_url = f"http://127.0.0.1:{server.port}"
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            strategy = operation.as_strategy(generation_mode=mode)

            @settings(
                max_examples=300,
                derandomize=bool(os.environ.get("CI")),  # CI: the same cases every run
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=strategy)
            def run(case: schemathesis.Case) -> None:
                case.call_and_validate(base_url=base_url, headers=AUTH, checks=CHECKS)

            try:
                run()
            except AssertionError as e:  # schemathesis' FailureGroup is an AssertionError
                failures.append(f"{operation.label} {mode.value}: {e}")
    assert server.process.poll() is None, "the server stopped answering"
    assert server.request("GET", "/api/telemetry/schemas")[0] == 200
    assert not failures, "\n\n".join(failures)
