"""POST api/telemetry/events with `Content-Encoding: gzip`, as forwarding servers send it."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

from tests.conftest import FRONTEND_ID, SERVER_ID

Recorded = Callable[[], list[dict[str, Any]]]


def batch(n: int, schema_id: str = FRONTEND_ID) -> bytes:
    events = [{"schema_id": schema_id, "version": 1, "data": {"action": "open", "count": i},
               "id": f"id-{i}"} for i in range(n)]  # fmt: skip
    return json.dumps({"events": events}).encode()


async def post(jp_fetch: Any, body: bytes, encoding: str = "gzip") -> Any:
    headers = {"Content-Type": "application/json", "Content-Encoding": encoding}
    return await jp_fetch("api", "telemetry", "events", method="POST", body=body, headers=headers)


async def test_a_gzipped_batch_is_recorded(jp_fetch: Any, recorded: Recorded) -> None:
    response = await post(jp_fetch, gzip.compress(batch(50)))
    assert json.loads(response.body)["recorded"] == 50
    assert sorted(e["count"] for e in recorded()) == list(range(50))


async def test_the_body_limit_applies_to_the_decompressed_size(
    jp_fetch: Any, recorded: Recorded
) -> None:
    bomb = gzip.compress(b" " * (8 << 20))  # 8 KiB that inflate to 8 MiB
    assert len(bomb) < 10_000
    with pytest.raises(HTTPClientError) as e:
        await post(jp_fetch, bomb)
    assert e.value.code == 413
    message = e.value.response.body.decode()  # type: ignore[union-attr]
    assert "more than 1048576 bytes" in message
    assert "TelemetryExtension.max_body_size" in message
    assert recorded() == []


@pytest.mark.parametrize(
    ("body", "encoding", "code"),
    [
        pytest.param(b"not gzip at all", "gzip", 400, id="not-gzip"),
        pytest.param(gzip.compress(batch(3))[:-12], "gzip", 400, id="truncated"),
        pytest.param(gzip.compress(batch(3)) * 2, "gzip", 400, id="two-members"),
        pytest.param(batch(3), "br", 415, id="brotli"),
    ],
)
async def test_a_broken_or_unknown_encoding_is_refused(
    jp_fetch: Any, recorded: Recorded, body: bytes, encoding: str, code: int
) -> None:
    with pytest.raises(HTTPClientError) as e:
        await post(jp_fetch, body, encoding)
    assert e.value.code == code
    assert "gzip" in e.value.response.body.decode()  # type: ignore[union-attr]
    assert recorded() == []


async def test_server_schemas_are_refused_unless_all_schemas_are_accepted(
    jp_fetch: Any, recorded: Recorded
) -> None:
    with pytest.raises(HTTPClientError) as e:
        await post(jp_fetch, batch(2, SERVER_ID), "identity")
    assert e.value.code == 400  # every event rejected: not open to frontends
    assert "not open to frontends" in e.value.response.body.decode()  # type: ignore[union-attr]
    assert recorded() == []


@pytest.mark.parametrize("jp_argv", [["--TelemetryExtension.accept_all_schemas=True"]])
async def test_a_collector_accepts_the_server_schemas_that_servers_forward(
    jp_fetch: Any, recorded: Recorded
) -> None:
    response = await post(jp_fetch, batch(2, SERVER_ID), "identity")
    assert json.loads(response.body)["recorded"] == 2
    assert [e["__schema__"] for e in recorded()] == [SERVER_ID, SERVER_ID]
