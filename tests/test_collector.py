"""The collector's parts that need no hub: gzip limits, the command line, the hub-event handler."""

from __future__ import annotations

import gzip
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from jupyter_telemetry_ext.core.errors import InflateError
from jupyter_telemetry_ext.core.eventlog import EventLog
from jupyter_telemetry_ext.hub.collector import register_server_schemas
from jupyter_telemetry_ext.server.inflate import Inflater
from tests.conftest import Sink

HUB_ACTION = "https://schema.jupyter.org/jupyterhub/events/server-action"


def test_a_gzip_bomb_never_inflates_beyond_the_limit() -> None:
    bomb = gzip.compress(b"0" * 100_000_000, 9)
    inflater = Inflater(1 << 20)
    chunks = iter([bomb[start : start + 65536] for start in range(0, len(bomb), 65536)])

    def feed_all() -> int:
        return sum(len(inflater.feed(chunk)) for chunk in chunks)

    with pytest.raises(InflateError) as error:
        feed_all()
    assert error.value.status == 413
    assert inflater.size <= (1 << 20) + 1


@pytest.mark.parametrize(
    "body",
    [
        gzip.compress(b'{"a": 1}')[:-4],  # cut short
        gzip.compress(b'{"a": 1}') + b"junk",  # data after the member
        b'{"a": 1}',  # not gzip at all
    ],
)
def test_a_broken_gzip_body_is_a_400(body: bytes) -> None:
    inflater = Inflater(1000)

    def inflate() -> None:
        inflater.feed(body)
        inflater.finish()

    with pytest.raises(InflateError) as error:
        inflate()
    assert error.value.status == 400


def test_a_gzip_body_within_the_limit_inflates_whole() -> None:
    body = b'{"events": []}' * 50
    packed = gzip.compress(body)
    inflater = Inflater(len(body))
    out = b"".join(inflater.feed(packed[i : i + 7]) for i in range(0, len(packed), 7))
    inflater.finish()
    assert out == body
    assert zlib.crc32(out) == zlib.crc32(body)


def _collect(tmp_path: Path, *args: str, prelude: str = "") -> subprocess.CompletedProcess[str]:
    code = (
        f"{prelude}\nfrom jupyter_telemetry_ext.cli.main import main\nmain({['collect', *args]!r})"
    )
    return subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip


def test_collect_without_jupyterhub_says_which_extra_to_install(tmp_path: Path) -> None:
    hidden = "import sys; sys.modules['jupyterhub'] = None  # as if not installed"
    result = _collect(tmp_path, "--url", "http://127.0.0.1:1", prelude=hidden)
    assert result.returncode == 2
    assert "pip install 'jupyter_telemetry_ext[hub]'" in result.stderr


def test_collect_refuses_a_missing_config_file(tmp_path: Path) -> None:
    result = _collect(tmp_path, "--config", str(tmp_path / "nope.py"))
    assert result.returncode == 2
    assert "nope.py: no such config file" in result.stderr


def test_the_collector_registers_jupyter_servers_event_schemas() -> None:
    eventlog = EventLog()
    ids = {schema.id for schema in register_server_schemas(eventlog, None)}
    assert "https://events.jupyter.org/jupyter_server/contents_service/v1" in ids
    assert all(not schema.frontend for schema in eventlog.schemas)


def test_hub_event_handler_records_the_hubs_events_through_an_eventlog(sink: Sink) -> None:
    pytest.importorskip("jupyterhub")
    from jupyter_events import EventLogger

    from jupyter_telemetry_ext.hub.events import HubEventHandler, hub_schema_folder

    handler = HubEventHandler(handlers=[sink.handler], allowed_schemas=[HUB_ACTION])
    hub_logger = EventLogger(handlers=[handler])  # as c.EventLogger.handlers configures it
    folder = hub_schema_folder()
    assert folder is not None
    for path in folder.glob("**/*.yaml"):
        hub_logger.register_event_schema(path)
    data = {"action": "start", "username": "alice", "servername": ""}
    hub_logger.emit(schema_id=HUB_ACTION, data=data)
    handler.flush()
    [capsule] = sink.events
    assert capsule["__schema__"] == HUB_ACTION
    assert capsule["__metadata_version__"] == 2
    assert capsule["action"] == "start"
    # the hub's schema has no categories: the handler labels the user name a user-identifier,
    # which an allow-list of schema ids (unrestricted properties only) redacts
    assert capsule["username"] is None


def test_hub_event_handler_adds_the_user_as_the_collector_does(sink: Sink) -> None:
    pytest.importorskip("jupyterhub")
    from jupyter_events import EventLogger

    from jupyter_telemetry_ext.core.recorded_user import hashed_user
    from jupyter_telemetry_ext.hub.events import HubEventHandler, hub_schema_folder

    allowed = {HUB_ACTION: {"allowed_categories": ["unrestricted", "user-identifier"]}}
    handler = HubEventHandler(
        handlers=[sink.handler], allowed_schemas=allowed, record_user="hashed",
        user_hash_secret="hub-key-of-the-tests",
    )  # fmt: skip
    hub_logger = EventLogger(handlers=[handler])
    for path in (hub_schema_folder() or Path()).glob("**/*.yaml"):
        hub_logger.register_event_schema(path)
    hub_logger.emit(schema_id=HUB_ACTION, data={"action": "stop", "username": "bob",
                                                "servername": ""})  # fmt: skip
    handler.flush()
    [capsule] = sink.events
    assert capsule["__user__"] == hashed_user(b"hub-key-of-the-tests", "bob")
    # with hashed users, the event's own user name is the hash too: the name is written nowhere
    assert capsule["username"] == capsule["__user__"]
    assert "bob" not in sink.stream.getvalue()
