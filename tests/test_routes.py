"""The REST API against a real server: good and bad input, batches, limits, auth and XSRF."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPResponse

from jupyter_telemetry_ext import EventLog
from jupyter_telemetry_ext.core.timestamps import parse_timestamp
from jupyter_telemetry_ext.server.routes import AUTH_RESOURCE, default_handlers
from tests.conftest import FRONTEND_ID, SERVER_ID, UNLISTED_ID, Sink, frontend_schema

Fetch = Callable[..., Awaitable[HTTPResponse]]
Recorded = Callable[[], list[dict[str, Any]]]
SECRET = "SECRET-USER-VALUE"


def event(schema_id: str = FRONTEND_ID, version: Any = 1, **data: Any) -> dict[str, Any]:
    """Return a posted event of the test schema."""
    return {"schema_id": schema_id, "version": version, "data": data or {"action": "open"}}


async def post(jp_fetch: Fetch, body: Any, **kwargs: Any) -> dict[str, Any]:
    """POST a body (bytes, or JSON-encoded) to api/telemetry/events; return the reply."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = await jp_fetch("api", "telemetry", "events", method="POST", body=raw, **kwargs)
    assert response.code == 200
    return dict(json.loads(response.body))


async def refused(fetch: Awaitable[Any]) -> tuple[int, str]:
    """Await a request that must fail; return its status and JSON message."""
    with pytest.raises(HTTPClientError) as e:
        await fetch
    assert e.value.response is not None
    return e.value.code, str(json.loads(e.value.response.body)["message"])


# POST api/telemetry/events: one event


async def test_post_records_a_redacted_event(jp_fetch: Fetch, recorded: Recorded) -> None:
    data = {"action": "open", "count": 3, "path": "home/me/secret.ipynb"}
    reply = await post(jp_fetch, event(**data), params={"1712345678901": ""})
    assert reply == {"status": "recorded"}
    [capsule] = recorded()
    assert capsule["__schema__"] == FRONTEND_ID
    assert capsule["__schema_version__"] == 1
    assert (capsule["action"], capsule["count"], capsule["path"]) == ("open", 3, None)


async def test_posted_text_beyond_ascii_is_written_as_ascii_escapes(
    jp_fetch: Fetch, recorded: Recorded, sink: Sink
) -> None:
    """Any text is recorded as it was posted, in lines that any stream encoding can write."""
    paths = ["café/naïve.ipynb", "☕/😀", "plain"]
    batch = {"events": [event(action="open", model={"paths": [p]}) for p in paths]}
    assert (await post(jp_fetch, batch))["recorded"] == 3
    assert [capsule["model"]["paths"][0] for capsule in recorded()] == paths
    assert all(line.isascii() for line in sink.lines)
    assert "\\u00e9" in sink.lines[0]


async def test_post_version_as_string(jp_fetch: Fetch, recorded: Recorded) -> None:
    assert await post(jp_fetch, event(version="1")) == {"status": "recorded"}
    assert len(recorded()) == 1


async def test_post_not_allowed_is_filtered(jp_fetch: Fetch, recorded: Recorded) -> None:
    assert await post(jp_fetch, event(UNLISTED_ID)) == {"status": "filtered"}
    assert recorded() == []


@pytest.mark.parametrize("jp_argv", [["--TelemetryExtension.event_time_window=0"]])
@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        ("2024-05-01T12:30:00.123Z", "2024-05-01T12:30:00.123000Z"),
        ("2024-05-01T12:30:00Z", "2024-05-01T12:30:00.000000Z"),
        ("2024-05-01T14:30:00.5+02:00", "2024-05-01T12:30:00.500000Z"),
        ("2024-05-01T07:00:00.123456789-05:30", "2024-05-01T12:30:00.123456Z"),
        ("2024-05-01t12:30:00z", "2024-05-01T12:30:00.000000Z"),
        ("2024-05-01T17:30:00+05:00Z", "2024-05-01T12:30:00.000000Z"),  # jupyter_server's form
        (None, None),
    ],
)
async def test_post_timestamps(
    jp_fetch: Fetch, recorded: Recorded, timestamp: str | None, expected: str | None
) -> None:
    before = datetime.now(timezone.utc)
    await post(jp_fetch, {**event(), "timestamp": timestamp})
    [capsule] = recorded()
    assert capsule.get("__event_time__") == expected  # the client's time, as it was sent
    received = parse_timestamp(capsule["__timestamp__"])  # the server's receive time
    assert before <= received <= datetime.now(timezone.utc)


BAD_EVENTS = [
    pytest.param(b"{not json", "the body is not valid JSON", id="bad-json"),
    pytest.param(b"", "the body is not valid JSON", id="empty-body"),
    pytest.param(b"\xff\xfe\xff", "the body is not valid JSON", id="not-utf8"),
    pytest.param(b'{"a": "\xed\xa0\x80"}', "not UTF-8 text (at byte 7)", id="not-utf8-inside"),
    pytest.param(
        b"\xef\xbb\xbf" + json.dumps(event()).encode(), "a byte order mark (U+FEFF)", id="bom"
    ),
    pytest.param(b'{"schema_id": "a", "version": 1, "data": {"n": NaN}}', "NaN", id="nan"),
    pytest.param([event()], "must be a JSON object", id="array-body"),
    pytest.param("text", "must be a JSON object", id="string-body"),
    pytest.param({"version": 1, "data": {}}, "schema_id: is required", id="no-schema-id"),
    pytest.param({"schema_id": FRONTEND_ID, "data": {}}, "version: is required", id="no-version"),
    pytest.param({"schema_id": FRONTEND_ID, "version": 1}, "data: is required", id="no-data"),
    pytest.param({**event(), "schema_id": 7}, "schema_id: must be a non-empty string", id="id-int"),
    pytest.param({**event(), "schema_id": ""}, "schema_id: must be a non-empty", id="id-empty"),
    pytest.param({**event(), "version": True}, "version: must be", id="version-bool"),
    pytest.param({**event(), "version": 1.5}, "version: must be", id="version-float"),
    pytest.param({**event(), "data": [1]}, "data: must be an object (got array)", id="data-array"),
    pytest.param({**event(), "timestamp": "yesterday"}, "timestamp: must be an RFC 3339", id="ts"),
    pytest.param({**event(), "timestamp": "2024-05-01T12:30:00"}, "timestamp: must be", id="naive"),
    pytest.param({**event(), "timestamp": "2024-02-30T00:00:00Z"}, "timestamp: is not", id="feb30"),
    pytest.param({**event(), "timestamp": 1714566600}, "timestamp: must be a string", id="ts-int"),
    pytest.param(
        {**event(), "timestamp": "2024-05-01T12:30:00+25:17"},
        "timestamp: is not a valid date-time: a part is out of range",
        id="offset-25h",
    ),
    pytest.param(
        {**event(), "timestamp": "0000-05-01T12:30:00Z"},
        "timestamp: is not a valid date-time: a part is out of range",
        id="year-0",
    ),
    pytest.param({**event(), "extra": 1}, "unknown field 'extra'", id="unknown-field"),
    pytest.param({**event(), "id": ""}, "id: must be an opaque token of 1 to 64", id="id-empty"),
    pytest.param({**event(), "id": "x" * 65}, "id: must be an opaque token", id="id-long"),
    pytest.param({**event(), "id": "a b"}, "(got a string that is not)", id="id-space"),
    pytest.param({**event(), "id": "ada@example.org"}, "id: must be an", id="id-email"),
    pytest.param({**event(), "id": "\u00e9t\u00e9"}, "id: must be an", id="id-non-ascii"),
    pytest.param({**event(), "id": "x\n"}, "id: must be an", id="id-newline"),
    pytest.param({**event(), "id": 7}, "id: must be an opaque token of 1 to 64", id="id-int"),
    pytest.param({**event(), "sent_at": 7}, "sent_at: must be a string", id="sent-at-int"),
    pytest.param({**event(), "sent_at": SECRET}, "sent_at: must be an RFC 3339", id="sent-at"),
    pytest.param({"events": [event()], "sent_at": "x"}, "sent_at: must be an RFC", id="batch-sent"),
    pytest.param({"events": []}, "events: the batch is empty", id="empty-batch"),
    pytest.param({"events": [1, "x"]}, "every event of the batch was rejected", id="all-rejected"),
    pytest.param(event(SECRET), "schema_id: no schema with this id is registered", id="id"),
    pytest.param(event(version=9), "version: schema 'test.frontend/example' has no such", id="v9"),
    pytest.param(event(count=SECRET), "data.count: must be of type 'integer'", id="invalid"),
    pytest.param(event(model={"paths": ["a", 3]}), "data.model.paths[1]: must be", id="nested"),
    pytest.param(event(action="open", other=SECRET), "data: has properties", id="extra-property"),
    pytest.param(event(action="open", __schema__="x"), "reserved", id="reserved-key"),
    pytest.param(
        event(action="open", model={"paths": [], "blob": {"__user__": SECRET}}),
        "data.model.*.__user__: property names starting with '__' are reserved",
        id="reserved-key-in-undescribed-object",
    ),
    pytest.param(
        json.dumps(event(action="open", __schema__="x")).replace('"__', '"\\u005f_').encode(),
        "reserved",
        id="reserved-key-escaped",
    ),
    pytest.param(
        json.dumps(event(action="open", model={"paths": [], "blob": {"__user__": SECRET}}))
        .replace('"__', '"_\\u005F')
        .encode(),
        "data.model.*.__user__: property names starting with '__' are reserved",
        id="reserved-key-escaped-in-undescribed-object",
    ),
    pytest.param({"events": {}}, "events: must be an array of events", id="events-object"),
    pytest.param({"events": [], "schema_id": "x"}, "unknown field 'schema_id'", id="batch-extra"),
]


@pytest.mark.parametrize(("body", "message"), BAD_EVENTS)
async def test_post_bad_event_is_400(
    jp_fetch: Fetch, recorded: Recorded, body: Any, message: str
) -> None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    code, text = await refused(jp_fetch("api", "telemetry", "events", method="POST", body=raw))
    assert (code, message in text) == (400, True), text
    assert SECRET not in text
    assert recorded() == []


@pytest.mark.parametrize(
    "content_type",
    ['application/json; charset="utf-8"', "application/json; charset = UTF-8",
     'text/plain;charset="UTF-8"; format=flowed'],
)  # fmt: skip
async def test_a_utf8_charset_is_json_however_it_is_written(
    jp_fetch: Fetch, recorded: Recorded, content_type: str
) -> None:
    body = json.dumps(event())
    headers = {"Content-Type": content_type}
    reply = await jp_fetch("api", "telemetry", "events", method="POST", body=body, headers=headers)
    assert json.loads(reply.body) == {"status": "recorded"}
    assert len(recorded()) == 1


async def test_an_out_of_range_timestamp_does_not_echo_its_parts(
    jp_fetch: Fetch, recorded: Recorded
) -> None:
    body = json.dumps({**event(), "timestamp": "2024-05-01T12:30:00+47:59"})
    code, text = await refused(jp_fetch("api", "telemetry", "events", method="POST", body=body))
    assert code == 400
    assert "47" not in text
    assert "timedelta" not in text
    assert recorded() == []


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "schemas/SECRET%ff%fe"), ("PUT", "consent/SECRET%ff")],
    ids=["schema", "study"],
)
async def test_an_argument_that_is_not_utf8_is_400_without_its_bytes(
    *,
    jp_fetch: Fetch,  # starts the server
    jp_http_port: int,
    jp_base_url: str,
    jp_auth_header: dict[str, str],
    method: str,
    path: str,
) -> None:
    url = f"http://127.0.0.1:{jp_http_port}{jp_base_url}api/telemetry/{path}"
    body = "{}" if method == "PUT" else None
    fetch = AsyncHTTPClient().fetch(url, method=method, body=body, headers=jp_auth_header)
    code, text = await refused(fetch)
    assert code == 400
    assert text.endswith(": not UTF-8 text")
    assert "SECRET" not in text
    assert "xff" not in text


async def test_post_server_schema_is_403(jp_fetch: Fetch, recorded: Recorded) -> None:
    body = json.dumps(event(SERVER_ID, action="forged"))
    code, text = await refused(jp_fetch("api", "telemetry", "events", method="POST", body=body))
    assert code == 403
    assert "not open to frontends" in text
    assert "frontend: true" in text
    assert recorded() == []


async def test_refusals_go_to_the_failed_events_channel(
    jp_fetch: Fetch, server_eventlog: EventLog, sink: Sink
) -> None:
    failed = Sink()
    server_eventlog.failed_handlers = [failed.handler]
    events = [event(count=SECRET), event("made.up/id" + SECRET), event(SERVER_ID)]
    body = json.dumps({"events": events})
    code, text = await refused(jp_fetch("api", "telemetry", "events", method="POST", body=body))
    assert (code, "every event of the batch was rejected" in text) == (400, True)
    await refused(jp_fetch("api", "telemetry", "events", method="POST", body=b"{"))
    assert server_eventlog.flush(5)
    described = [(f["outcome"], f["schema_id"], f["field"]) for f in failed.events]
    assert described == [
        ("rejected", FRONTEND_ID, "data.count"),
        ("rejected", None, "schema_id"),  # an unknown id is not counted by name
        ("rejected", SERVER_ID, None),
        ("rejected", None, None),
    ]
    assert SECRET not in failed.stream.getvalue()
    failed.handler.close()


# POST api/telemetry/events: batches


async def test_batch_results_in_order(jp_fetch: Fetch, recorded: Recorded) -> None:
    events = [
        event(action="open", count=1),
        event(count="two"),
        event(UNLISTED_ID),
        event(SERVER_ID),
        "not an event",
        event(action="close", count=3),
    ]
    reply = await post(jp_fetch, {"events": events})
    statuses = [result["status"] for result in reply["results"]]
    assert statuses == ["recorded", "rejected", "filtered", "rejected", "rejected", "recorded"]
    assert (reply["recorded"], reply["filtered"], reply["rejected"]) == (2, 1, 3)
    assert "data.count" in reply["results"][1]["error"]
    assert "not open to frontends" in reply["results"][3]["error"]
    assert "error" not in reply["results"][0]
    assert [capsule["count"] for capsule in recorded()] == [1, 3]


async def test_batch_reply_counts_each_status(jp_fetch: Fetch) -> None:
    reply = await post(jp_fetch, {"events": [event(UNLISTED_ID)]})
    assert reply == {
        "results": [{"status": "filtered"}],
        "recorded": 0,
        "filtered": 1,
        "sampled_out": 0,
        "no_consent": 0,
        "duplicate": 0,
        "rejected": 0,
    }


# Limits


async def test_body_over_the_limit_is_413(jp_fetch: Fetch, recorded: Recorded) -> None:
    body = json.dumps({"events": [event()]}).encode() + b" " * (1 << 20)
    code, text = await refused(jp_fetch("api", "telemetry", "events", method="POST", body=body))
    assert (code, "max_body_size" in text) == (413, True)
    assert recorded() == []


async def test_batch_over_the_limit_is_413(jp_fetch: Fetch, recorded: Recorded) -> None:
    body = json.dumps({"events": [event()] * 501})
    code, text = await refused(jp_fetch("api", "telemetry", "events", method="POST", body=body))
    assert (code, "max_batch_events" in text) == (413, True)
    assert recorded() == []


async def test_batch_at_the_limit(jp_fetch: Fetch, recorded: Recorded) -> None:
    reply = await post(jp_fetch, {"events": [event()] * 500})
    assert reply["recorded"] == 500
    assert len(recorded()) == 500


async def test_event_over_the_limit(jp_fetch: Fetch, recorded: Recorded) -> None:
    big = event(path="x" * (32 << 10))
    code, text = await refused(
        jp_fetch("api", "telemetry", "events", method="POST", body=json.dumps(big))
    )
    assert (code, "max_event_size" in text) == (413, True)
    reply = await post(jp_fetch, {"events": [big, event()]})
    assert [r["status"] for r in reply["results"]] == ["rejected", "recorded"]
    assert "max_event_size" in reply["results"][0]["error"]
    assert len(recorded()) == 1


@pytest.mark.parametrize(
    "jp_argv",
    [["--TelemetryExtension.max_batch_events=2", "--TelemetryExtension.max_event_size=200"]],
)
async def test_limits_are_configurable(jp_fetch: Fetch) -> None:
    code, _ = await refused(
        jp_fetch(
            "api", "telemetry", "events", method="POST", body=json.dumps({"events": [event()] * 3})
        )
    )
    assert code == 413
    reply = await post(jp_fetch, {"events": [event(path="x" * 200), event()]})
    assert [r["status"] for r in reply["results"]] == ["rejected", "recorded"]


async def test_full_queue_is_503_with_retry_after(
    jp_fetch: Fetch, server_eventlog: EventLog
) -> None:
    server_eventlog.close()  # restart the writer with a queue of one, and block it
    server_eventlog.queue_size = 1
    gate = BlockingHandler()
    server_eventlog.handlers = [gate]
    server_eventlog.background = False
    server_eventlog.background = True
    try:
        await post(jp_fetch, event())  # taken by the writer, which blocks in the handler
        assert gate.entered.wait(5)
        await post(jp_fetch, event())  # waits in the queue
        with pytest.raises(HTTPClientError) as e:
            await jp_fetch("api", "telemetry", "events", method="POST", body=json.dumps(event()))
        assert e.value.code == 503
        assert e.value.response is not None
        assert e.value.response.headers["Retry-After"] == "1"
        reply = await post(jp_fetch, {"events": [event()]})
        assert reply["rejected"] == 1
        assert "queue is full" in reply["results"][0]["error"]
    finally:
        gate.unblock.set()


class BlockingHandler(__import__("logging").Handler):
    """A handler that blocks on its first record until released."""

    def __init__(self) -> None:
        import threading

        super().__init__()
        self.entered = threading.Event()
        self.unblock = threading.Event()

    def emit(self, record: Any) -> None:
        self.entered.set()
        self.unblock.wait(10)


# GET api/telemetry/schemas


@pytest.fixture
def fetch_url(
    jp_serverapp: Any, http_server_client: Any, jp_base_url: str, jp_auth_header: dict[str, str]
) -> Fetch:
    """GET a path below the base URL exactly as given (jp_fetch would quote `%` again)."""

    def fetch(path: str) -> Awaitable[HTTPResponse]:
        return http_server_client.fetch(jp_base_url + path, headers=jp_auth_header)  # type: ignore[no-any-return]

    return fetch


async def test_list_schemas(jp_fetch: Fetch, jp_serverapp: Any) -> None:
    # "1" with newer jupyter_server and jupyter_events, 1 with older ones
    contents = "https://events.jupyter.org/jupyter_server/contents_service/v1"
    server_version = jp_serverapp.event_logger.schemas.get(contents).version
    response = await jp_fetch("api", "telemetry", "schemas")
    schemas = json.loads(response.body)["schemas"]
    summary = {(s["id"], s["version"]): (s["frontend"], s["allowed"]) for s in schemas}
    assert summary == {
        (FRONTEND_ID, 1): (True, True),
        (FRONTEND_ID, 2): (True, True),
        (UNLISTED_ID, 1): (True, False),
        (SERVER_ID, 1): (False, True),
        # jupyter_server's own schemas, recorded through the same allow-list (not allowed here)
        **{(f"https://events.jupyter.org/jupyter_server/{name}/v1", server_version): (False, False)
           for name in ("contents_service", "gateway_client", "kernel_actions")},
    }  # fmt: skip
    keys = {"id", "version", "title", "description", "frontend", "allowed", "sampling", "policy"}
    assert set(schemas[0]) == keys
    # the policy says what is recorded of each schema the allow-list records, and only those
    assert {k: allowed for k, (_, allowed) in summary.items()} == {
        (s["id"], s["version"]): s["policy"] is not None for s in schemas
    }
    assert {s["sampling"] for s in schemas} == {1}  # nothing sampled here


@pytest.mark.parametrize("safe", ["/", ""], ids=["slash", "all-quoted"])
async def test_get_schema_versions(fetch_url: Fetch, safe: str) -> None:
    response = await fetch_url("api/telemetry/schemas/" + quote(FRONTEND_ID, safe=safe))
    model = json.loads(response.body)
    assert (model["id"], model["allowed"]) == (FRONTEND_ID, True)
    assert model["versions"] == [frontend_schema(), frontend_schema(version=2)]


async def test_get_schema_with_a_uri_id(fetch_url: Fetch, server_eventlog: EventLog) -> None:
    schema_id = "https://events.example.org/ext/thing:done"
    server_eventlog.register_schema({**frontend_schema(schema_id), "version": "2024-01"})
    response = await fetch_url("api/telemetry/schemas/" + quote(schema_id, safe=""))
    assert json.loads(response.body)["versions"][0]["version"] == "2024-01"


async def test_get_unknown_schema_is_404(jp_fetch: Fetch) -> None:
    code, text = await refused(jp_fetch("api", "telemetry", "schemas", "no.such/schema"))
    assert (code, "no schema with this id" in text) == (404, True)
    assert "no.such" not in text  # the unknown id is not echoed


# Authentication and authorization


@pytest.fixture
def jp_server_auth_resources(jp_server_auth_core_resources: dict[str, str]) -> dict[str, str]:
    """Map the telemetry routes to their auth resource, for pytest-jupyter's authorizer."""
    return {**jp_server_auth_core_resources, **{url: AUTH_RESOURCE for url, _ in default_handlers}}


@pytest.fixture
def authorizer(jp_server_authorizer: type, jp_server_config: Any) -> type:
    """pytest-jupyter's checking authorizer, with its own permissions; websockets need read."""
    actions = {**jp_server_authorizer.HTTP_METHOD_TO_AUTH_ACTION, "WEBSOCKET": "read"}  # type: ignore[attr-defined]
    cls = type(
        "Authorizer",
        (jp_server_authorizer,),
        {"permissions": {}, "HTTP_METHOD_TO_AUTH_ACTION": actions},
    )
    jp_server_config.ServerApp.authorizer_class = cls
    return cls


ROUTES = [
    pytest.param("POST", ("events",), "write", id="post-events"),
    pytest.param("GET", ("schemas",), "read", id="get-schemas"),
    pytest.param("GET", ("schemas", FRONTEND_ID), "read", id="get-schema"),
    pytest.param("WS", ("subscribe",), "read", id="ws-subscribe"),
]
PERMISSIONS = [
    pytest.param({}, id="nothing"),
    pytest.param({"actions": ["read"], "resources": [AUTH_RESOURCE]}, id="read"),
    pytest.param({"actions": ["write"], "resources": [AUTH_RESOURCE]}, id="write"),
    pytest.param({"actions": ["read", "write", "execute"], "resources": ["contents"]}, id="other"),
    pytest.param({"actions": ["read", "write"], "resources": [AUTH_RESOURCE]}, id="all"),
]


async def request(
    jp_fetch: Fetch, jp_ws_fetch: Fetch, method: str, parts: tuple[str, ...], **kwargs: Any
) -> int:
    """Send one request to a telemetry route; return its status (101 for an open websocket)."""
    path = ("api", "telemetry", *parts)
    try:
        if method == "WS":
            (await jp_ws_fetch(*path, **kwargs)).close()
            return 101
        body = json.dumps(event()) if method == "POST" else None
        return (await jp_fetch(*path, method=method, body=body, **kwargs)).code
    except HTTPClientError as e:
        error = e
    assert error.response is not None
    assert b"schemas" not in error.response.body  # an error, never data
    return error.code


@pytest.mark.parametrize(("method", "parts", "action"), ROUTES)
@pytest.mark.parametrize("permissions", PERMISSIONS)
async def test_authorization_matrix(
    *,
    authorizer: type,  # first: the server must start with it
    jp_fetch: Fetch,
    jp_ws_fetch: Fetch,
    method: str,
    parts: tuple[str, ...],
    action: str,
    permissions: dict[str, list[str]],
) -> None:
    authorizer.permissions = permissions  # type: ignore[attr-defined]
    allowed = AUTH_RESOURCE in permissions.get("resources", []) and action in permissions["actions"]
    code = await request(jp_fetch, jp_ws_fetch, method, parts)
    assert code == ({"WS": 101}.get(method, 200) if allowed else 403)


@pytest.mark.parametrize(("method", "parts", "action"), ROUTES)
async def test_no_credentials_is_refused(
    *,
    jp_fetch: Fetch,
    jp_ws_fetch: Fetch,
    recorded: Recorded,
    method: str,
    parts: tuple[str, ...],
    action: str,
) -> None:
    code = await request(jp_fetch, jp_ws_fetch, method, parts, headers={"Authorization": ""})
    assert code in (401, 403)
    assert recorded() == []


@pytest.mark.parametrize(
    ("method", "parts", "body"),
    [
        ("POST", ("events",), json.dumps(event())),
        ("GET", ("schemas",), None),
        ("PUT", ("consent", "a-study"), json.dumps({"decision": "granted", "version": 1})),
    ],
    ids=["post-events", "get-schemas", "put-consent"],
)
@pytest.mark.parametrize("token", ["", "token not-the-token"], ids=["no-token", "wrong-token"])
async def test_a_request_without_a_user_is_told_to_authenticate(
    *,
    jp_fetch: Fetch,
    recorded: Recorded,
    method: str,
    parts: tuple[str, ...],
    body: str | None,
    token: str,
) -> None:
    fetch = jp_fetch("api", "telemetry", *parts, method=method, body=body,
                     headers={"Authorization": token})  # fmt: skip
    code, message = await refused(fetch)
    assert code == 403
    assert message.startswith("not authenticated: send the server's token")
    assert recorded() == []


async def test_xsrf_is_enforced_for_cookie_sessions(jp_fetch: Fetch, recorded: Recorded) -> None:
    login = await jp_fetch("api", "telemetry", "schemas")
    cookie = login.headers["Set-Cookie"].split(";")[0]
    session = {"Authorization": "", "Cookie": f"{cookie}; _xsrf=xsrf-token-1"}
    body = json.dumps(event())
    code, text = await refused(
        jp_fetch("api", "telemetry", "events", method="POST", body=body, headers=dict(session))
    )
    assert (code, "_xsrf" in text) == (403, True)
    assert recorded() == []
    headers = {**session, "X-XSRFToken": "xsrf-token-1"}
    response = await jp_fetch(
        "api", "telemetry", "events", method="POST", body=body, headers=headers
    )
    assert json.loads(response.body) == {"status": "recorded"}
    assert len(recorded()) == 1


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (b"{}", {"Content-Type": "image/png"}),
        (b"x" * 2_000_000, {}),
        (json.dumps({"events": [1, 2]}).encode(), {}),
    ],
    ids=["bad-content-type", "too-large", "all-rejected"],
)
async def test_without_credentials_nothing_about_the_body_is_checked_or_reported(
    jp_fetch: Fetch, server_eventlog: EventLog, body: bytes, headers: dict[str, str]
) -> None:
    failed = Sink()
    server_eventlog.failed_handlers = [failed.handler]
    code, _ = await refused(
        jp_fetch("api", "telemetry", "events", method="POST", body=body,
                 headers={"Authorization": "", **headers})
    )  # fmt: skip
    assert code in (401, 403)
    assert server_eventlog.flush(5)
    assert failed.lines == []
    assert server_eventlog.outcomes() == {}


async def test_all_rejected_batch_is_400_with_each_result(jp_fetch: Fetch) -> None:
    body = json.dumps({"events": [event(count="three"), 7]})
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch("api", "telemetry", "events", method="POST", body=body)
    assert e.value.code == 400
    assert e.value.response is not None
    reply = json.loads(e.value.response.body)
    assert reply["message"].startswith(
        "every event of the batch was rejected; events[0]: data.count"
    )
    assert [r["status"] for r in reply["results"]] == ["rejected", "rejected"]
    assert (reply["recorded"], reply["rejected"]) == (0, 2)
