"""Limits and ids key on a stable principal, whatever the client: plain token, cookie, user.

jupyter_server makes up a new anonymous user for every request that presents its token without
the login cookie, as API clients (curl, requests, a script) do; `jp_fetch` is such a client.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError, HTTPResponse
from traitlets.config import Config

from jupyter_telemetry_ext import EventLog
from tests.conftest import FRONTEND_ID, SERVER_ID, Sink

Fetch = Callable[..., Awaitable[HTTPResponse]]
Recorded = Callable[[], list[dict[str, Any]]]


def event(**fields: Any) -> dict[str, Any]:
    """Return a posted event of the test schema, with extra envelope fields."""
    return {"schema_id": FRONTEND_ID, "version": 1, "data": {"action": "open"}, **fields}


async def send(
    jp_fetch: Fetch, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """POST a JSON body; return the status and the JSON reply, errors included."""
    raw = json.dumps(body)
    try:
        response = await jp_fetch(
            "api", "telemetry", "events", method="POST", body=raw, headers=headers
        )
    except HTTPClientError as e:
        error = e
    else:
        return response.code, json.loads(response.body)
    assert error.response is not None
    return error.code, json.loads(error.response.body)


async def cookie_session(jp_fetch: Fetch) -> dict[str, str]:
    """Log in as a browser does (token once, then its cookie); return the session's headers."""
    login = await jp_fetch("api", "telemetry", "schemas")
    cookie = login.headers["Set-Cookie"].split(";")[0]
    return {"Authorization": "", "Cookie": f"{cookie}; _xsrf=x1", "X-XSRFToken": "x1"}


FIVE_A_SECOND = ["--TelemetryExtension.rate_limit=5", "--TelemetryExtension.rate_burst=5"]


@pytest.mark.parametrize("jp_argv", [FIVE_A_SECOND])
async def test_plain_token_requests_are_rate_limited(
    jp_fetch: Fetch, recorded: Recorded, server_eventlog: EventLog
) -> None:
    codes = [(await send(jp_fetch, event()))[0] for _ in range(40)]
    assert codes.count(429) >= 20
    assert codes[:5] == [200] * 5
    assert len(recorded()) == codes.count(200)
    assert server_eventlog.outcomes()[("(unknown)", "rate_limited")] == codes.count(429)


async def test_plain_token_retries_are_duplicates(jp_fetch: Fetch, recorded: Recorded) -> None:
    assert await send(jp_fetch, event(id="a")) == (200, {"status": "recorded"})
    assert await send(jp_fetch, event(id="a")) == (200, {"status": "duplicate"})
    batch = {"events": [event(id="b"), event(id="c")]}
    assert (await send(jp_fetch, batch))[1]["recorded"] == 2
    assert (await send(jp_fetch, batch))[1]["duplicate"] == 2
    assert [c["__client_id__"] for c in recorded()] == ["a", "b", "c"]


async def test_token_in_the_query_is_the_same_principal(
    jp_fetch: Fetch, jp_auth_header: dict[str, str], recorded: Recorded
) -> None:
    token = jp_auth_header["Authorization"].split()[1]
    assert (await send(jp_fetch, event(id="a")))[1] == {"status": "recorded"}
    bearer = {"Authorization": f"Bearer {token}"}
    assert (await send(jp_fetch, event(id="a"), bearer))[1] == {"status": "duplicate"}
    body = json.dumps(event(id="a"))
    response = await jp_fetch(
        "api", "telemetry", "events", method="POST", body=body,
        headers={"Authorization": ""}, params={"token": token},
    )  # fmt: skip
    assert json.loads(response.body) == {"status": "duplicate"}
    assert len(recorded()) == 1


@pytest.mark.parametrize(
    "jp_argv", [["--TelemetryExtension.rate_limit=0.5", "--TelemetryExtension.rate_burst=3"]]
)
async def test_a_cookie_session_keeps_its_own_limits(jp_fetch: Fetch, recorded: Recorded) -> None:
    browser = await cookie_session(jp_fetch)
    codes = [(await send(jp_fetch, event(), browser))[0] for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    assert (await send(jp_fetch, event()))[0] == 200  # the token's own bucket is not the cookie's
    other = await cookie_session(jp_fetch)  # another login is another session
    assert (await send(jp_fetch, event(), other))[0] == 200
    assert len(recorded()) == 5


async def test_a_cookie_session_retry_is_a_duplicate(jp_fetch: Fetch, recorded: Recorded) -> None:
    browser = await cookie_session(jp_fetch)
    assert (await send(jp_fetch, event(id="a"), browser))[1] == {"status": "recorded"}
    assert (await send(jp_fetch, event(id="a"), browser))[1] == {"status": "duplicate"}
    # A script with the token is another principal: its ids are its own.
    assert (await send(jp_fetch, event(id="a")))[1] == {"status": "recorded"}
    assert len(recorded()) == 2


@pytest.fixture
def user_allowed(jp_server_config: Config) -> None:
    """Allow the `user-identifier` category (so `__user__` is kept) for the test schema."""
    allowed = {FRONTEND_ID: {"allowed_categories": ["user-identifier"]}, SERVER_ID: {}}
    jp_server_config.EventLog.allowed_schemas = allowed


ONE_A_SECOND = ["--TelemetryExtension.rate_limit=1", "--TelemetryExtension.rate_burst=1"]


@pytest.mark.parametrize("jp_argv", [[*ONE_A_SECOND, "--TelemetryExtension.record_user=username"]])
async def test_the_token_never_reaches_events_or_logs(
    *,
    user_allowed: None,
    jp_fetch: Fetch,
    jp_auth_header: dict[str, str],
    recorded: Recorded,
    server_eventlog: EventLog,
    caplog: pytest.LogCaptureFixture,
) -> None:
    token = jp_auth_header["Authorization"].split()[1]
    failed = Sink()
    server_eventlog.failed_handlers = [failed.handler]
    caplog.set_level(logging.DEBUG)
    assert (await send(jp_fetch, event(id="a")))[0] == 200
    code, reply = await send(jp_fetch, event(id="b"))
    assert code == 429
    [capsule] = recorded()
    # `__user__` is the name the identity provider gave, never a value derived from the token.
    assert capsule["__user__"] not in (None, token)
    written = json.dumps(capsule) + failed.stream.getvalue() + json.dumps(reply) + caplog.text
    assert token not in written
    assert "token:" not in written
    failed.handler.close()


SMALL_ID_WINDOW = [
    "--TelemetryExtension.duplicate_capacity=100",
    "--TelemetryExtension.duplicate_capacity_per_user=20",
]


@pytest.mark.parametrize("jp_argv", [SMALL_ID_WINDOW])
async def test_one_users_ids_never_evict_anothers(
    named_users: None, jp_fetch: Fetch, recorded: Recorded
) -> None:
    alice, bob = {"X-Test-User": "alice"}, {"X-Test-User": "bob"}
    assert (await send(jp_fetch, event(id="bob-1"), bob))[1] == {"status": "recorded"}
    for start in range(0, 500, 100):
        flood = {"events": [event(id=f"alice-{n}") for n in range(start, start + 100)]}
        assert (await send(jp_fetch, flood, alice))[1]["recorded"] == 100
    assert (await send(jp_fetch, event(id="bob-1"), bob))[1] == {"status": "duplicate"}
    # Alice's flood forgot only her own oldest ids; her latest are still remembered.
    assert (await send(jp_fetch, event(id="alice-499"), alice))[1] == {"status": "duplicate"}
    assert (await send(jp_fetch, event(id="alice-0"), alice))[1] == {"status": "recorded"}
    assert len(recorded()) == 1 + 500 + 1


@pytest.mark.parametrize(
    "jp_argv",
    [["--IdentityProvider.token=", *FIVE_A_SECOND]],
)
async def test_without_authentication_every_cookieless_client_is_one_principal(
    jp_fetch: Fetch, recorded: Recorded
) -> None:
    no_login = {"Authorization": "", "Cookie": "_xsrf=x1", "X-XSRFToken": "x1"}
    codes = [(await send(jp_fetch, event(), no_login))[0] for _ in range(20)]
    assert codes[:5] == [200] * 5
    assert codes.count(429) >= 10
    assert len(recorded()) == codes.count(200)
