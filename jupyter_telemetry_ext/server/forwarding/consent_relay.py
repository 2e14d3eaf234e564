"""The consent routes of a server that forwards to a collector: relayed to the collector.

The collector keeps the decisions; the server asks it with its hub token, which is its user's,
so the collector answers for that user only.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from jupyter_telemetry_ext.core.errors import ConsentError

from .forwarder import ForwardSettings

CONSENT_PATH = "api/telemetry/consent"
SCHEMAS_PATH = "api/telemetry/schemas"


async def relay(
    settings: ForwardSettings, study: str | None = None, body: bytes | None = None
) -> Any:
    """GET the collector's studies (no `study`), or PUT a decision on `study`; return its JSON
    reply, or raise ConsentError with its status and message (502/503 when it cannot say)."""
    path = CONSENT_PATH if study is None else f"{CONSENT_PATH}/{quote(study, safe='')}"
    return await ask(settings, path, "GET" if study is None else "PUT", body)


async def ask(
    settings: ForwardSettings,
    path: str,
    method: str,
    body: bytes | None,
    timeout: float | None = None,
) -> Any:
    """Send a request to the collector with the hub token (waiting at most `timeout` s, None:
    the forwarding's timeout); return its JSON object reply, or raise ConsentError with its
    status and message (502/503 when it cannot say)."""
    request = HTTPRequest(
        settings.collector_url + path,
        method=method,
        headers={"Authorization": f"token {settings.token}", "Content-Type": "application/json"},
        body=body,
        request_timeout=settings.timeout if timeout is None else timeout,
        follow_redirects=False,
    )
    try:
        response = await AsyncHTTPClient().fetch(request, raise_error=False)
    except (OSError, HTTPClientError):
        msg = "the collector cannot be reached: no decision is read or kept; retry"
        raise ConsentError(msg, 503) from None
    try:
        reply = json.loads(response.body or b"null")
    except ValueError:
        reply = None
    if response.code == 200 and isinstance(reply, dict):
        return reply
    message = reply.get("message") if isinstance(reply, dict) else None
    if 400 <= response.code < 500 and isinstance(message, str):
        raise ConsentError(message, response.code)
    msg = f"the collector answered {response.code}: no decision is read or kept; retry"
    raise ConsentError(msg, 502)
