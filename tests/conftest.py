"""Shared fixtures: a real Jupyter server with the extension (pytest-jupyter) and event sinks."""

from __future__ import annotations

import errno
import io
import json
import logging
import threading
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, cast

import pytest
from jupyter_server.auth import IdentityProvider, User
from traitlets.config import Config

from jupyter_telemetry_ext import EventLog

if TYPE_CHECKING:
    from tests.servers import Process

pytest_plugins = ["pytest_jupyter.jupyter_server"]


class Sink:
    """A real logging handler writing to memory, read back as JSON lines."""

    def __init__(self) -> None:
        self.stream = io.StringIO()
        self.handler = logging.StreamHandler(self.stream)

    @property
    def lines(self) -> list[str]:
        return [line for line in self.stream.getvalue().splitlines() if line]

    @property
    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines]


class Gate(logging.Handler):
    """A handler stuck (on a dead network share, say) until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.open = threading.Event()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.open.wait(30)
        self.count += 1


class DiskFull(logging.FileHandler):
    """A real FileHandler on a disk that is full."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            self.handleError(record)


@pytest.fixture
def sink() -> Iterator[Sink]:
    """A fresh in-memory JSON-lines sink."""
    s = Sink()
    yield s
    s.handler.close()


def make_schema(
    schema_id: str = "test.events/example", version: Any = 1, **props: Any
) -> dict[str, Any]:
    """Return a minimal valid schema with the given properties."""
    return {
        "$id": schema_id,
        "version": version,
        "title": "Example",
        "description": "An example event schema.",
        "type": "object",
        "properties": props or {"action": {"type": "string"}},
    }


@pytest.fixture
def eventlog_factory(sink: Sink) -> Iterator[Any]:
    """Build EventLogs that write to `sink` and are closed after the test."""
    logs: list[EventLog] = []

    def make(**kwargs: Any) -> EventLog:
        kwargs.setdefault("handlers", [sink.handler])
        log = EventLog(**kwargs)
        logs.append(log)
        return log

    yield make
    for log in logs:
        log.close()


@pytest.fixture
def servers() -> Iterator[list[Process]]:
    """Server subprocesses started by a test, killed at its end if still running."""
    started: list[Process] = []
    yield started
    for server in started:
        server.kill()


# The fast loop, `pytest -m "not e2e"`, starts no server subprocess and no browser: outside a test
# marked e2e, what starts them fails the test instead.
E2E_STARTS = (
    "tests.servers.Process.__init__",  # jupyter server, jupyter lab
    "tests.hubserver.Hub.start",
    "tests.pgserver.PostgresServer.init",
    "playwright.sync_api.BrowserType.launch",
)
UNMARKED = pytest.StashKey[pytest.MonkeyPatch]()


def refuse_unmarked(*args: object, **kwargs: object) -> NoReturn:
    """Fail the test: it starts a server subprocess or a browser without the e2e marker."""
    pytest.fail("this test starts a server subprocess or a browser: mark it @pytest.mark.e2e")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before any fixture of a test not marked e2e, make the server and browser starts fail."""
    if item.get_closest_marker("e2e") is None:
        patch = item.stash[UNMARKED] = pytest.MonkeyPatch()
        for target in E2E_STARTS:
            patch.setattr(target, refuse_unmarked)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    """Put the server and browser starts back after the test's teardown."""
    try:
        yield
    finally:
        if UNMARKED in item.stash:
            item.stash[UNMARKED].undo()


# The server extension (TelemetryExtension) under pytest-jupyter.

FRONTEND_ID = "test.frontend/example"
UNLISTED_ID = "test.frontend/unlisted"
SERVER_ID = "test.server/kernel"
SHIPPED_SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"
STRING = {"type": "string"}


def frontend_schema(schema_id: str = FRONTEND_ID, version: Any = 1) -> dict[str, Any]:
    """Return a schema open to frontends, with a personal `path` and a nested array."""
    schema = make_schema(
        schema_id,
        version,
        action={"enum": ["open", "close"], "categories": ["unrestricted"]},
        count={"type": "integer", "categories": ["unrestricted"]},
        path={"type": "string", "categories": ["user-identifiable-information"]},
        model={"type": "object", "properties": {"paths": {"type": "array", "items": STRING}}},
    )
    return {**schema, "frontend": True, "additionalProperties": False}


@pytest.fixture
def telemetry_schema_dir(tmp_path: Path) -> Path:
    """A folder of test schemas: frontend v1 and v2, a frontend one not allowed, a server one."""
    folder = tmp_path / "telemetry-schemas"
    schemas = {
        "example/v1.json": frontend_schema(),
        "example/v2.json": frontend_schema(version=2),
        "unlisted.json": frontend_schema(UNLISTED_ID),
        "server.yaml": make_schema(SERVER_ID),
    }
    for name, schema in schemas.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(json.dumps(schema), encoding="utf-8")
    return folder


@pytest.fixture
def jp_server_config(sink: Sink, telemetry_schema_dir: Path) -> Config:
    """Enable the extension, require authentication, record the test schemas into `sink`."""
    return Config(
        {
            "ServerApp": {
                # pytest-jupyter adds terminals unless told; they warn without authentication.
                "jpserver_extensions": {
                    "jupyter_telemetry_ext": True,
                    "jupyter_server_terminals": False,
                },
                "allow_unauthenticated_access": False,
            },
            "TelemetryExtension": {"schema_paths": [str(telemetry_schema_dir)]},
            "EventLog": {
                "handlers": [sink.handler],
                "allowed_schemas": {FRONTEND_ID: {}, SERVER_ID: {}},
            },
        }
    )


@pytest.fixture
def server_eventlog(jp_serverapp: Any) -> EventLog:
    """The EventLog that the running server's TelemetryExtension published."""
    return cast(EventLog, jp_serverapp.web_app.settings["telemetry_eventlog"])


@pytest.fixture
def recorded(server_eventlog: EventLog, sink: Sink) -> Callable[[], list[dict[str, Any]]]:
    """Return a function that flushes the server's EventLog and returns what `sink` holds."""

    def read() -> list[dict[str, Any]]:
        assert server_eventlog.flush(5)
        return sink.events

    return read


class HeaderUserIdentityProvider(IdentityProvider):  # type: ignore[misc]
    """Token authentication as usual; then the header `X-Test-User` names the user."""

    async def get_user(self, handler: Any) -> User | None:
        user = await self._get_user(handler)
        name = handler.request.headers.get("X-Test-User")
        return User(username=name) if user is not None and name else user


@pytest.fixture
def named_users(jp_server_config: Config) -> None:
    """Let each request name its user with `X-Test-User` (for per-user rules)."""
    jp_server_config.ServerApp.identity_provider_class = HeaderUserIdentityProvider


def billion_laughs(levels: int = 10) -> str:
    """Return a schema file of about 700 bytes whose YAML aliases expand to 9**levels strings."""
    lines = ["$id: test.bomb/laughs", "version: 1", "title: Laughs", "description: A bomb.",
             "type: object", "properties:", "  x: {type: string}",
             'a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']  # fmt: skip
    lines += [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"
