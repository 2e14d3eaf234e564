"""Forwarding to a collector, with real servers: a user's server and a stand-in collector.

The stand-in collector is a second `jupyter server` running the extension (the same REST API),
writing what it records to a JSON-lines file; the user's server forwards to it with a plain
token, a stable principal there, so the stand-in deduplicates forwarded events by their ids.
"""

from __future__ import annotations

import http.client
import json
import re
import signal
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FRONTEND_ID, frontend_schema
from tests.servers import TOKEN, Event, Server, free_port, read_events, wait_until, write_config

pytestmark = pytest.mark.e2e  # starts `jupyter server` subprocesses

CONTENTS = "https://events.jupyter.org/jupyter_server/contents_service/v1"

STANDIN_CONFIG = """
import logging
c.ServerApp.jpserver_extensions = {{"jupyter_telemetry_ext": True}}
c.TelemetryExtension.schema_paths = [{schemas!r}]
c.EventLog.handlers = [logging.FileHandler({sink!r})]
c.EventLog.allowed_schemas = {{
    "test.frontend/example": {{"allowed_categories": ["user-identifiable-information"]}},
    {contents!r}: {{"allowed_properties": ["action", "path"]}},
}}
c.TelemetryExtension.accept_all_schemas = True
c.TelemetryExtension.rate_limit = {rate!r}
c.TelemetryExtension.rate_burst = 1
c.TelemetryExtension.reply_after_write = True
{extra}
"""

# The user's own allow-list records nothing: what arrives at the collector was forwarded
# before it.
USER_CONFIG = """
import logging
c.ServerApp.jpserver_extensions = {{"jupyter_telemetry_ext": True}}
c.TelemetryExtension.schema_paths = [{schemas!r}]
c.EventLog.handlers = [logging.FileHandler({local!r})]
c.EventLog.allowed_schemas = []
c.TelemetryExtension.rate_limit = 0
c.TelemetryExtension.reply_after_write = True
c.TelemetryExtension.forward_retry_max = 1.0
{extra}
"""


def event(n: int, **extra: Any) -> Event:
    """Return a frontend event with the id `ev-<n>` (or the given fields instead)."""
    data = {"action": "open", "count": n, "path": f"notebooks/{n}.ipynb"}
    return {"schema_id": FRONTEND_ID, "version": 1, "data": data, "id": f"ev-{n}", **extra}


@dataclass
class Hub:
    """A stand-in collector (started and stopped at will) and the user's server forwarding to
    it, each in its own folder."""

    tmp: Path
    servers: list[Any]
    port: int = field(default_factory=free_port)
    collector: Server | None = None
    user: Server | None = None

    @property
    def sink(self) -> Path:
        return self.tmp / "collector" / "events.jsonl"

    def start_collector(self, rate: float = 0.0, extra: str = "") -> Server:
        folder = self.tmp / "collector"
        if not folder.exists():
            folder.mkdir()
            write_config(folder, STANDIN_CONFIG, sink=str(self.sink), contents=CONTENTS,
                         rate=rate, extra=extra)  # fmt: skip
        self.collector = Server(folder, port=self.port)
        self.servers.append(self.collector)
        return self.collector

    def stop_collector(self) -> None:
        assert self.collector is not None
        assert self.collector.stop() == 0
        self.collector = None

    def start_user(
        self, extra: str = "", url: str | None = None, schemas: dict[str, Any] | None = None
    ) -> Server:
        folder = self.tmp / "user"
        if not folder.exists():
            folder.mkdir()
            local = str(folder / "local.jsonl")
            write_config(folder, USER_CONFIG, local=local, extra=extra)
            for name, schema in (schemas or {}).items():
                (folder / "schemas" / name).write_text(json.dumps(schema), "utf-8")
        env = {
            "JUPYTER_TELEMETRY_COLLECTOR_URL": url or f"http://127.0.0.1:{self.port}/",
            "JUPYTERHUB_API_TOKEN": TOKEN,
        }
        self.user = Server(folder, env=env)
        self.servers.append(self.user)
        return self.user

    def arrived(self) -> list[Event]:
        return read_events(self.sink)

    def arrived_ids(self) -> Counter[str]:
        return Counter(e.get("__client_id__") for e in self.arrived())

    def wait_for_ids(self, ids: set[str], timeout: float = 60) -> None:
        wait_until(
            lambda: ids <= set(self.arrived_ids()),
            timeout,
            lambda: (
                f"missing at the collector: {sorted(ids - set(self.arrived_ids()))}\n"
                f"--- user log\n{self.user_log()[-4000:]}"
            ),
        )

    def wait_until_sent(self, timeout: float = 60) -> None:
        """Wait until the user's spool is empty (nothing more will be sent)."""
        wait_until(lambda: metric(self.user, "jupyter_telemetry_forward_spool_events") == 0,
                   timeout, self.user_log)  # fmt: skip

    def user_log(self) -> str:
        assert self.user is not None
        return self.user.log.read_text("utf-8", errors="replace")


@pytest.fixture
def hub(tmp_path: Path, servers: list[Any]) -> Hub:
    return Hub(tmp_path, servers)


def metric(server: Server | None, name: str, labels: str = "") -> float:
    """Return one value of the server's Prometheus `/metrics` (0 when absent)."""
    assert server is not None
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request("GET", "/metrics", headers={"Authorization": f"token {TOKEN}"})
        text = connection.getresponse().read().decode()
    finally:
        connection.close()
    match = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def forwarded(server: Server | None, outcome: str) -> float:
    return metric(server, "jupyter_telemetry_forward_events_total", f'{{outcome="{outcome}"}}')


def send(
    server: Server | None, method: str, path: str, body: Any, headers: dict[str, str]
) -> tuple[int, Any]:
    """Send a request with exactly these headers; return the status and the JSON reply."""
    assert server is not None
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request(method, path, json.dumps(body), headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        connection.close()


def post(server: Server | None, body: Any) -> tuple[int, Any]:
    """Post with the server's token and no cookie, as an API client does."""
    return send(server, "POST", "/api/telemetry/events", body, {"Authorization": f"token {TOKEN}"})


def browser_headers(server: Server) -> dict[str, str]:
    """Log in once with the token, then be a browser: the login cookie and an XSRF token."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request("GET", "/api/telemetry/schemas",
                           headers={"Authorization": f"token {TOKEN}"})  # fmt: skip
        response = connection.getresponse()
        response.read()
        cookie = response.getheader("Set-Cookie", "").split(";")[0]
    finally:
        connection.close()
    assert cookie
    return {"Cookie": f"{cookie}; _xsrf=x1", "X-XSRFToken": "x1"}


def test_posted_and_server_events_arrive_at_the_collector_with_their_ids(hub: Hub) -> None:
    hub.start_collector()
    user = hub.start_user()
    status, listing = send(user, "GET", "/api/telemetry/schemas", None,
                           {"Authorization": f"token {TOKEN}"})  # fmt: skip
    [example] = [s for s in listing["schemas"] if s["id"] == FRONTEND_ID]
    assert (status, example["allowed"]) == (200, True)  # the collector decides, not the user
    assert post(user, {"events": [event(1), event(2)]})[1]["recorded"] == 2
    assert post(user, event(3)) == (200, {"status": "recorded"})
    no_id = {k: v for k, v in event(4).items() if k != "id"}
    assert post(user, no_id) == (200, {"status": "recorded"})
    assert send(user, "POST", "/api/telemetry/events", event(5), browser_headers(user))[0] == 200
    model = {"type": "file", "format": "text", "content": "secret plans"}
    assert send(user, "PUT", "/api/contents/plans.txt", model,
                {"Authorization": f"token {TOKEN}"})[0] in (200, 201)  # fmt: skip

    hub.wait_for_ids({"ev-1", "ev-2", "ev-3", "ev-5"})
    wait_until(lambda: any(e["__schema__"] == CONTENTS for e in hub.arrived()), 30)
    hub.wait_until_sent()
    arrived = hub.arrived()
    frontend = [e for e in arrived if e["__schema__"] == FRONTEND_ID]
    assert sorted(e["count"] for e in frontend) == [1, 2, 3, 4, 5]
    assert {e["path"] for e in frontend} >= {"notebooks/1.ipynb"}  # unredacted by the user
    [generated] = [e["__client_id__"] for e in frontend if e["count"] == 4]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    saves = [e for e in arrived if e["__schema__"] == CONTENTS and e["action"] == "save"]
    assert saves[0]["path"] == "plans.txt"
    assert read_events(hub.tmp / "user" / "local.jsonl") == []  # the user's allow-list: nothing
    assert forwarded(user, "sent") >= 6
    assert TOKEN not in hub.user_log()  # the token sent to the collector is never logged


def announced(server: Server) -> dict[str, tuple[bool, float]]:
    """Return what the server's schema listing says is recorded of each schema, and sampled."""
    _, listing = send(server, "GET", "/api/telemetry/schemas", None,
                      {"Authorization": f"token {TOKEN}"})  # fmt: skip
    return {s["id"]: (s["allowed"], s["sampling"]) for s in listing["schemas"]}


def test_the_server_announces_what_the_collector_records(hub: Hub) -> None:
    other = "test.frontend/other"  # registered on the user's server only
    hub.start_collector(extra=f"c.EventLog.sampling = {{{FRONTEND_ID!r}: 0.5}}")
    user = hub.start_user(schemas={"other.json": frontend_schema(other)})
    wait_until(lambda: announced(user)[other] == (False, 1.0), 30, hub.user_log)
    assert announced(user)[FRONTEND_ID] == (True, 0.5)


def test_collector_down_then_back_every_accepted_event_arrives_once(hub: Hub) -> None:
    user = hub.start_user()  # the collector is not running yet
    posted = set()
    for batch in range(3):
        events = [event(batch * 10 + n) for n in range(10)]
        assert post(user, {"events": events})[1]["recorded"] == 10
        posted |= {e["id"] for e in events}
        time.sleep(0.5)
    wait_until(lambda: forwarded(user, "retried") > 0, 30)
    assert metric(user, "jupyter_telemetry_forward_spool_events") == 30
    hub.start_collector()
    hub.wait_for_ids(posted)
    hub.wait_until_sent()
    assert set(hub.arrived_ids().values()) == {1}
    assert set(hub.arrived_ids()) == posted
    assert hub.user_log().count("is unavailable") == 1  # once per outage, not per attempt
    assert "answers again" in hub.user_log()


class Relay:
    """A TCP relay from the user's server to the collector, noting each request and reply.

    While `drop_replies` is above 0, a reply the collector sent to a POST is not relayed: the
    connection is closed instead, as when a network fails after the collector recorded events.
    """

    def __init__(self, upstream: int) -> None:
        self.upstream, self.drop_replies = upstream, 0
        self.requests: list[tuple[float, bytes]] = []  # POSTs
        self.replies: list[tuple[float, bytes]] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream))
        except OSError:
            client.close()
            return
        posting = threading.Event()  # the last request on this connection is a POST
        threading.Thread(target=self._requests, args=(client, upstream, posting),
                         daemon=True).start()  # fmt: skip
        self._replies(upstream, client, posting)

    def _requests(
        self, client: socket.socket, upstream: socket.socket, posting: threading.Event
    ) -> None:
        try:
            while data := client.recv(1 << 16):
                if data.startswith((b"GET", b"POST")):
                    (posting.set if data.startswith(b"POST") else posting.clear)()
                if data.startswith(b"POST"):
                    self.requests.append((time.monotonic(), data[:4096]))
                upstream.sendall(data)
        except OSError:
            pass
        client.close()
        upstream.close()

    def _replies(
        self, upstream: socket.socket, client: socket.socket, posting: threading.Event
    ) -> None:
        try:
            while data := upstream.recv(1 << 16):
                if data.startswith(b"HTTP/"):
                    self.replies.append((time.monotonic(), data[:4096]))
                if posting.is_set() and self.drop_replies > 0:
                    self.drop_replies -= 1
                    break
                client.sendall(data)
        except OSError:
            pass
        client.close()
        upstream.close()

    def close(self) -> None:
        self.listener.close()


def test_a_lost_reply_is_sent_again_and_stored_once(hub: Hub) -> None:
    collector = hub.start_collector()
    relay = Relay(hub.port)
    relay.drop_replies = 1
    try:
        user = hub.start_user(url=f"http://127.0.0.1:{relay.port}/")
        events = [event(n) for n in range(40)]
        assert post(user, {"events": events})[1]["recorded"] == 40
        hub.wait_for_ids({e["id"] for e in events})
        hub.wait_until_sent()
    finally:
        relay.close()
    assert len(relay.requests) >= 2  # the lost reply's batch was sent again
    assert b"content-encoding: gzip" in relay.requests[0][1].lower()
    assert set(hub.arrived_ids().values()) == {1}
    duplicates = metric(collector, "jupyter_telemetry_events_total",
                        f'{{outcome="duplicate",schema="{FRONTEND_ID}"}}')  # fmt: skip
    assert duplicates == 40


def test_retry_after_from_the_collector_is_honoured(hub: Hub) -> None:
    hub.start_collector(rate=0.5)  # one request each 2 s: a second one is answered 429
    relay = Relay(hub.port)
    try:
        user = hub.start_user(url=f"http://127.0.0.1:{relay.port}/")
        assert post(user, event(1))[0] == 200
        hub.wait_for_ids({"ev-1"})
        assert post(user, event(2))[0] == 200
        hub.wait_for_ids({"ev-2"})
    finally:
        relay.close()
    [(refused_at, head)] = [(at, h.decode()) for at, h in relay.replies if b" 429 " in h[:20]]
    match = re.search(r"(?im)^Retry-After: (\d+)", head)
    assert match is not None
    retry_after = float(match.group(1))
    after = min(at for at, _ in relay.requests if at > refused_at)
    assert after - refused_at >= retry_after - 0.05


def test_sigterm_with_a_spool_and_no_collector_loses_nothing(hub: Hub) -> None:
    user = hub.start_user()
    posted = set()
    for batch in range(5):
        events = [event(batch * 100 + n) for n in range(100)]
        assert post(user, {"events": events})[1]["recorded"] == 100
        posted |= {e["id"] for e in events}
    assert user.stop(signal.SIGTERM) == 0
    spool = hub.tmp / "user" / "data" / "jupyter_telemetry_ext_forward"
    assert sum(1 for _ in spool.glob("*.jsonl")) >= 1
    hub.start_collector()
    user = hub.start_user()
    hub.wait_for_ids(posted)
    hub.wait_until_sent()
    assert set(hub.arrived_ids().values()) == {1}
    assert "events left by a stopped server" in hub.user_log()


def test_a_full_spool_refuses_new_events_with_503_and_counts_them(hub: Hub) -> None:
    user = hub.start_user("c.TelemetryExtension.forward_spool_bytes = 8192")
    replies = [post(user, event(n)) for n in range(60)]  # about 200 bytes each
    statuses = [status for status, _ in replies]
    assert 200 in statuses
    assert 503 in statuses
    assert "the forwarding spool is full" in replies[statuses.index(503)][1]["message"]
    assert statuses.index(503) > 20
    assert forwarded(user, "refused") == statuses.count(503)
    assert hub.user_log().count("the spool is full") == 1
    accepted = {f"ev-{n}" for n, status in enumerate(statuses) if status == 200}
    hub.start_collector()
    hub.wait_for_ids(accepted)
    hub.wait_until_sent()
    assert set(hub.arrived_ids()) == accepted


def test_a_full_spool_can_drop_the_oldest_events_instead(hub: Hub) -> None:
    user = hub.start_user('c.TelemetryExtension.forward_spool_bytes = 8192\n'
                          'c.TelemetryExtension.forward_when_full = "drop_oldest"')  # fmt: skip
    assert all(post(user, event(n))[0] == 200 for n in range(100))
    dropped = forwarded(user, "dropped")
    assert dropped > 0
    assert hub.user_log().count("the oldest events are dropped") == 1
    hub.start_collector()
    hub.wait_for_ids({"ev-99"})
    hub.wait_until_sent()
    arrived = hub.arrived_ids()
    assert len(arrived) + dropped == 100
    assert set(arrived) == {f"ev-{n}" for n in range(100 - len(arrived), 100)}  # the newest


def test_a_refused_token_is_logged_once_and_the_events_wait(hub: Hub, tmp_path: Path) -> None:
    hub.start_collector()
    user = hub.start_user("c.TelemetryExtension.collector_token_env = 'NO_SUCH_TOKEN_VARIABLE'\n"
                          "c.TelemetryExtension.forward_retry_max = 0.2")  # fmt: skip
    assert post(user, {"events": [event(1), event(2)]})[0] == 200
    wait_until(lambda: forwarded(user, "retried") >= 6, 30)  # three attempts or more
    assert hub.user_log().count("the collector refused the server's token") == 1
    assert metric(user, "jupyter_telemetry_forward_spool_events") == 2
    assert hub.arrived() == []
