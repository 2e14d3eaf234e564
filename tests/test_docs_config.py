"""The configuration blocks of docs/jupyterhub.md and docs/postgres.md (marked `tested`), run as
written: the allow-lists name real schemas and keep the user, the handler lines build real
handlers that store in PostgreSQL. (tests/test_hub.py runs a hub with the jupyterhub.md ones.)"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import pytest
import yaml
from traitlets.config import Config, PyFileConfigLoader

from jupyter_telemetry_ext import EventLog, PostgresEventHandler
from jupyter_telemetry_ext.core.errors import StoreError
from jupyter_telemetry_ext.hub.collector import TelemetryCollector, _open_to_users
from tests.conftest import SHIPPED_SCHEMAS
from tests.hubserver import doc_block, doc_blocks

HUB_ACTION = "https://schema.jupyter.org/jupyterhub/events/server-action"
HUBS_OWN_ACTION = "https://events.jupyter.org/jupyter_telemetry_ext/hub-action"
NOT_KEPT = "but the allow-list does not keep the category user-identifier"
NOTEBOOK = "https://events.jupyter.org/jupyter_telemetry_ext/notebook"


def load(tmp_path: Path, block: str) -> Config:
    """Return the config a block makes when traitlets runs it as a config file."""
    path = tmp_path / "config_from_docs.py"
    path.write_text(block, "utf-8")
    config: Config = PyFileConfigLoader(path.name, path=str(tmp_path)).load_config()
    return config


@pytest.fixture
def database_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """$TELEMETRY_DB set (a database never reached: no event is written) and a private data
    dir for the handlers' spools."""
    url = "postgresql://telemetry@127.0.0.1:1/telemetry"
    monkeypatch.setenv("TELEMETRY_DB", url)
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "data"))
    return url


def test_every_tested_block_is_found() -> None:
    assert set(doc_blocks("jupyterhub.md")) == {
        "jupyterhub_config",
        "jupyterhub_config_events",
        "jupyterhub_dashboard",  # run by tests/test_dashboard_hub.py
        "telemetry_config",
    }
    assert set(doc_blocks("postgres.md")) == {"jupyter_server_config"}
    # run by tests/test_hub_audit.py, test_audit_z2jh.py, test_audit_queries.py and
    # test_audit_docs.py
    assert set(doc_blocks("audit.md")) == {"audit-check", "z2jh_audit", "who_ran_what",
                                           "was_this_run", "audit_config"}  # fmt: skip


def test_the_collectors_allow_list_takes_every_shipped_and_server_schema_with_its_user(
    tmp_path: Path, database_variable: str
) -> None:
    config = load(
        tmp_path,
        doc_block(
            "jupyterhub.md",
            "telemetry_config",
            {
                '"..."': '"key-of-the-tests"',
                '"/srv/jupyterhub/collector-spool"': repr(str(tmp_path / "spool")),
            },
        ),
    )
    collector = TelemetryCollector(config=config)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    collector.log.addHandler(handler)
    try:
        eventlog = collector._eventlog()
    finally:
        collector.log.removeHandler(handler)
    [postgres] = eventlog.handlers
    assert isinstance(postgres, PostgresEventHandler)
    assert collector.record_user == "hashed"
    registered = {schema.id for schema in eventlog.schemas}
    allowed = set(eventlog.allowed_schemas)
    assert allowed <= registered  # no typo: each id names a schema the collector knows
    shipped = {yaml.safe_load(p.read_text())["$id"] for p in SHIPPED_SCHEMAS.glob("*/*.yaml")}
    # The hub's own records (hub-action) are the hub's to write, never the users' to post.
    shipped = {schema_id for schema_id in shipped if _open_to_users(schema_id)}
    server = {
        s.id
        for s in eventlog.schemas
        if s.id.startswith("https://events.jupyter.org/jupyter_server/")
    }
    assert shipped | server <= allowed  # complete: every frontend and server schema
    assert NOT_KEPT not in stream.getvalue()  # the user of every allowed schema is kept
    eventlog.close()
    postgres.close()


def test_the_hubs_own_allow_list_keeps_the_user_of_its_server_actions(
    tmp_path: Path, database_variable: str, caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("jupyterhub")
    from jupyter_telemetry_ext.hub.actions import HubAuditHandler
    from jupyter_telemetry_ext.hub.events import HubEventHandler

    fill = {'"/srv/jupyterhub/spool"': repr(str(tmp_path / "spool")), '"..."': '"key-of-the-tests"'}
    with caplog.at_level(logging.WARNING):
        config = load(tmp_path, doc_block("jupyterhub.md", "jupyterhub_config_events", fill))
    [handler] = config.EventLogger.handlers
    assert isinstance(handler, HubEventHandler)
    assert handler.eventlog.is_allowed(HUB_ACTION)
    assert handler.eventlog.is_allowed(HUBS_OWN_ACTION)  # HubAuditHandler's, the same EventLog
    assert not _open_to_users(HUBS_OWN_ACTION)  # and the collector never takes one from users
    # HubAuditHandler is the hub's log function, recording through the same EventLog
    settings = config.JupyterHub.tornado_settings.get_value({})
    audit = settings["log_function"].__self__
    assert isinstance(audit, HubAuditHandler)
    assert audit.eventlog is handler.eventlog
    assert audit.record_user == "hashed"
    assert HUB_ACTION in {schema.id for schema in handler.eventlog.schemas}
    assert handler.record_user == "hashed"
    assert not [r for r in caplog.records if NOT_KEPT in r.getMessage()]
    handler.close()
    for sink in handler.eventlog.handlers:
        sink.close()


def test_the_handler_line_without_its_variable_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TELEMETRY_DB", raising=False)
    with pytest.raises(StoreError, match="the environment variable TELEMETRY_DB is empty"):
        load(tmp_path, doc_block("postgres.md", "jupyter_server_config"))


@pytest.mark.e2e
def test_the_handler_line_stores_in_a_table_partitioned_by_day(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    psycopg = pytest.importorskip("psycopg")
    from tests.pgserver import binaries, running_server

    bindir = binaries()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found")
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "data"))
    with running_server(bindir) as server:
        url = server.url(server.create_database())
        monkeypatch.setenv("TELEMETRY_DB", url)
        config = load(tmp_path, doc_block("postgres.md", "jupyter_server_config"))
        [handler] = config.EventLog.handlers
        eventlog = EventLog(config=config, allowed_schemas=[NOTEBOOK])
        eventlog.register_schema_file(SHIPPED_SCHEMAS / "notebook" / "v1.yaml")
        eventlog.record_event(NOTEBOOK, 1, {"action": "opened"})
        handler.flush()
        with psycopg.connect(url) as conn:
            query = "SELECT schema_id, data FROM telemetry_events"
            rows: list[Any] = conn.execute(query).fetchall()
            kind = "SELECT relkind FROM pg_class WHERE relname = 'telemetry_events'"
            relkind = conn.execute(kind).fetchone()
        handler.close()
    assert rows == [(NOTEBOOK, {"action": "opened"})]
    assert relkind == ("p",)  # partition_by_day: a partitioned table
