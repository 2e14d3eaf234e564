"""Unknown tokens at the collector, under a real JupyterHub: a token the hub refused is not asked
about again for a while (however the request varies its session cookie, however many arrive at
once), a flood of them asks the hub a bounded number of times and is answered 503 with
Retry-After beyond `hub_lookup_concurrency`, and a known user's posts are answered meanwhile.

The hub's questions are counted in the hub's own access log (`GET /hub/api/user`, one line
each), which no other client of this module's hub asks.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.hubserver import SERVICE, Hub, running_hub
from tests.servers import read_events, wait_until

pytest.importorskip("jupyterhub", reason="the [hub] extra (jupyterhub) is not installed")
requests = pytest.importorskip("requests")

pytestmark = pytest.mark.e2e  # starts JupyterHub

NOTEBOOK = "https://events.jupyter.org/jupyter_telemetry_ext/notebook"
# One question to the hub at a time, and none waits: a second unknown token asked about while
# one is answered gets 503 at once.
CONFIG = """\
import logging
c.TelemetryCollector.record_user = "username"
c.TelemetryCollector.hub_lookup_concurrency = 1
c.TelemetryCollector.hub_lookup_timeout = 0
c.EventLog.handlers = [logging.FileHandler({sink!r})]
c.EventLog.allowed_schemas = {{{notebook!r}: {{"allowed_categories": ["user-identifier"]}}}}
"""
LOOKUP = re.compile(r"\] (\d{3}) GET /hub/api/user \(")


@dataclass
class Deployment:
    """The hub, the collector's sink, alice's token, the tokens sent so far."""

    hub: Hub
    sink: Path
    alice: str
    sent: set[str]

    def post(self, token: str, client_id: str, session: str | None = None) -> Any:
        """POST one event with `token` (and a hub session cookie); return the response."""
        self.sent.add(token)
        body = {"schema_id": NOTEBOOK, "version": 1, "data": {"action": "opened"},
                "id": client_id}  # fmt: skip
        cookies = {"jupyterhub-session-id": session} if session else {}
        return requests.post(
            f"{self.hub.url}services/{SERVICE}/api/telemetry/events", json=body,
            headers={"Authorization": f"token {token}"}, cookies=cookies, timeout=60,
        )  # fmt: skip

    def lookups(self) -> list[str]:
        """Return the status of each question the hub was asked about a token so far."""
        return LOOKUP.findall(self.hub.log.read_text("utf-8", "replace"))

    def settled(self, before: int) -> list[str]:
        """Return the statuses of the questions since `before`, once the log stops growing
        (the hub writes a line after it answered)."""
        seen = [-1]

        def still() -> bool:
            now = len(self.lookups())
            done, seen[0] = now == seen[0], now
            return done

        wait_until(still, 15, lambda: "the hub's log kept growing", 0.5)
        return self.lookups()[before:]


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """A hub whose collector asks the hub one question at a time, without waiting."""
    tmp = tmp_path_factory.mktemp("hub-tokens")
    sink, config = tmp / "events.jsonl", tmp / "telemetry_config.py"
    config.write_text(CONFIG.format(sink=str(sink), notebook=NOTEBOOK))
    with running_hub(tmp, config) as hub:
        yield Deployment(hub, sink, hub.user_token("alice"), set())


def test_a_repeated_unknown_token_asks_the_hub_once(deployment: Deployment) -> None:
    """30 posts with one unknown token, 10 at a time, each with its own session cookie (part
    of HubAuth's cache key): one question to the hub, and each post refused with 403."""
    token, before = secrets.token_hex(16), len(deployment.lookups())
    with ThreadPoolExecutor(10) as pool:
        replies = list(pool.map(lambda n: deployment.post(token, f"u-{n}", f"s-{n}"), range(30)))
    assert [r.status_code for r in replies] == [403] * 30, [r.text for r in replies]
    assert "authenticate with a JupyterHub token" in replies[0].json()["message"]
    assert deployment.settled(before) == ["403"]


def test_a_known_user_posts_while_unknown_tokens_flood(deployment: Deployment) -> None:
    """8 clients post 240 times with 12 unknown tokens while alice posts: her posts are
    recorded, the flood is refused (403, or 503 while another token is asked about), and the
    hub is asked at most once per token (and not about alice, already known)."""
    assert deployment.post(deployment.alice, "known-0").status_code == 200
    tokens, before = [secrets.token_hex(16) for _ in range(12)], len(deployment.lookups())

    def post(n: int) -> tuple[str, int]:
        if n % 80 == 40:  # alice, amid the flood
            return "alice", int(deployment.post(deployment.alice, f"known-{n}").status_code)
        return "flood", int(deployment.post(tokens[n % 12], f"f-{n}", f"s-{n}").status_code)

    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(post, range(240)))
    answered = [status for who, status in replies if who == "alice"]
    statuses = [status for who, status in replies if who == "flood"]
    assert answered == [200] * 3
    assert set(statuses) <= {403, 503}, statuses
    asked = deployment.settled(before)
    assert len(asked) <= len(tokens), asked
    assert set(asked) == {"403"}  # nothing about alice's token: its answer is cached
    ids = {e.get("__client_id__") for e in read_events(deployment.sink)}
    assert {"known-40", "known-120", "known-200"} <= ids


def test_new_tokens_past_the_limit_get_503_with_retry_after(deployment: Deployment) -> None:
    """Distinct unknown tokens at once: while one is asked about the others are answered 503,
    with Retry-After and a JSON message; the hub is asked at most once per token."""
    tokens, before = [secrets.token_hex(16) for _ in range(60)], len(deployment.lookups())
    with ThreadPoolExecutor(20) as pool:
        replies = list(pool.map(lambda t: deployment.post(t, "n"), tokens))
    busy = [r for r in replies if r.status_code == 503]
    assert busy, [r.status_code for r in replies]
    assert {r.status_code for r in replies} <= {403, 503}
    assert busy[0].headers["Retry-After"].isdigit()
    assert "asking the hub about too many tokens at once" in busy[0].json()["message"]
    assert len(deployment.settled(before)) <= len(tokens) - len(busy)
    assert deployment.post(deployment.alice, "after-flood").status_code == 200


def test_no_token_is_in_the_log(deployment: Deployment) -> None:
    """The hub's log (with the collector's, a managed service's output) names no token sent."""
    log = deployment.hub.log.read_text("utf-8", "replace")
    assert deployment.sent
    assert not [t for t in deployment.sent if t in log]
