"""The dashboard on a single Jupyter server: its API over the server's JSON-lines file (DuckDB),
the page, the filters, bad input, and no store."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError, HTTPResponse
from traitlets.config import Config

from jupyter_telemetry_ext.core.timestamps import format_timestamp
from jupyter_telemetry_ext.dashboard.views import ACTIVE_TIME, CELL, NOTEBOOK, VIEWS
from tests.conftest import SHIPPED_SCHEMAS

Fetch = Callable[..., Awaitable[HTTPResponse]]
USERS = ("ada", "bob", "cyd")


@pytest.fixture
def file_handler(tmp_path: Path) -> Iterator[logging.FileHandler]:
    """The server's JSON-lines file, closed after the server."""
    handler = logging.FileHandler(tmp_path / "events.jsonl")
    yield handler
    handler.close()


@pytest.fixture
def jp_server_config(jp_server_config: Config, file_handler: logging.FileHandler) -> Config:
    """The shipped schemas, users named by a header, recorded by name into a JSON-lines file."""
    from tests.conftest import HeaderUserIdentityProvider

    jp_server_config.ServerApp.identity_provider_class = HeaderUserIdentityProvider
    jp_server_config.TelemetryExtension.schema_paths = [str(SHIPPED_SCHEMAS)]
    jp_server_config.TelemetryExtension.record_user = "username"
    jp_server_config.TelemetryExtension.reply_after_write = True
    jp_server_config.EventLog.handlers = [file_handler]
    jp_server_config.EventLog.allowed_schemas = {
        CELL: {"allowed_categories": ["unrestricted", "user-identifier"]},
        NOTEBOOK: {"allowed_categories": ["unrestricted", "user-identifier"]},
        ACTIVE_TIME: {"allowed_categories": ["unrestricted", "user-identifier"]},
    }
    return jp_server_config


def cell(status: str) -> dict[str, Any]:
    """Return a posted cell event (schema v2)."""
    data = {"action": "executed", "status": status}
    return {"schema_id": CELL, "version": 2, "data": data}


def notebook() -> dict[str, Any]:
    """Return a posted notebook-opened event (schema v2)."""
    data = {"action": "opened", "notebook_session": "s1"}
    return {"schema_id": NOTEBOOK, "version": 2, "data": data}


async def post(jp_fetch: Fetch, user: str, events: list[dict[str, Any]]) -> None:
    """Post a batch as `user`; check every event was recorded."""
    response = await jp_fetch("api", "telemetry", "events", method="POST",
                              body=json.dumps({"events": events}),
                              headers={"X-Test-User": user})  # fmt: skip
    reply = json.loads(response.body)
    assert reply["recorded"] == len(events), reply


async def view(jp_fetch: Fetch, name: str, **params: Any) -> dict[str, Any]:
    """Return a view's model."""
    response = await jp_fetch("api", "telemetry", "dashboard", name, params=params)
    assert response.headers["Content-Type"].startswith("application/json")
    return json.loads(response.body)  # type: ignore[no-any-return]


async def posted(jp_fetch: Fetch) -> None:
    """3 users: ada 2 cell runs (1 error) + a notebook, bob 1 run, cyd 1 notebook."""
    await post(jp_fetch, "ada", [cell("ok"), cell("error"), notebook()])
    await post(jp_fetch, "bob", [cell("ok")])
    await post(jp_fetch, "cyd", [notebook()])


async def test_every_view_counts_what_was_posted(jp_fetch: Fetch) -> None:
    await posted(jp_fetch)
    index = json.loads((await jp_fetch("api", "telemetry", "dashboard")).body)
    assert (index["views"], index["source"], index["scope"]) == (list(VIEWS), "files", "all")
    active = await view(jp_fetch, "active-users")
    assert [r["users"] for r in active["rows"]] == [3]
    assert active["rows"][0]["period"].endswith("T00:00:00.000000Z")
    rows = (await view(jp_fetch, "events"))["rows"]
    events = {(r["schema"], r["action"]): r["events"] for r in rows}
    assert events == {(CELL, "executed"): 3, (NOTEBOOK, "opened"): 2}
    lab = (await view(jp_fetch, "lab-activity"))["rows"]
    assert [(r["cell_runs"], r["cell_errors"], r["notebooks_opened"]) for r in lab] == [(3, 1, 2)]
    rows = (await view(jp_fetch, "outcomes"))["rows"]
    outcomes = {(r["schema"], r["outcome"]): r["events"] for r in rows}
    assert outcomes[(CELL, "recorded")] == 3
    rows = (await view(jp_fetch, "health"))["rows"]
    health = {(r["part"], r["measure"]): r["value"] for r in rows}
    assert health[("store", "last event received")].endswith("Z")
    for name in VIEWS:  # every view answers, with its columns in each row
        model = await view(jp_fetch, name)
        assert all(set(row) == set(model["columns"]) for row in model["rows"]), name


def summary(active_s: float) -> dict[str, Any]:
    """Return a posted active-time summary of notebook session s1."""
    data = {"action": "summary", "notebook_session": "s1", "active_s": active_s}
    return {"schema_id": ACTIVE_TIME, "version": 1, "data": data}


async def test_a_sessions_active_minutes_are_the_sum_of_its_summaries(jp_fetch: Fetch) -> None:
    """Each summary counts the seconds since the previous one (the client sends one a minute):
    ada's session was active 3 x 400 s, 20 minutes; bob's 100 s."""
    await post(jp_fetch, "ada", [summary(400), summary(400), summary(400)])
    await post(jp_fetch, "bob", [summary(100)])
    rows = (await view(jp_fetch, "active-time"))["rows"]
    assert rows == [{"minutes": 0, "sessions": 1}, {"minutes": 20, "sessions": 1}]


async def test_filters_narrow_the_counts(jp_fetch: Fetch) -> None:
    await posted(jp_fetch)
    only_cells = await view(jp_fetch, "active-users", schema=CELL)
    assert [r["users"] for r in only_cells["rows"]] == [2]
    future = format_timestamp(datetime.now(timezone.utc) + timedelta(days=1))
    later = format_timestamp(datetime.now(timezone.utc) + timedelta(days=2))
    assert (await view(jp_fetch, "events", since=future, until=later))["rows"] == []
    month = await view(jp_fetch, "active-users", bucket="month")
    assert (month["bucket"], month["rows"][0]["period"][8:10]) == ("month", "01")


async def test_the_default_range_is_the_last_30_utc_days(jp_fetch: Fetch) -> None:
    for until in ({}, {"until": "2026-03-10T12:00:00Z"}, {"until": "2026-03-10T00:00:00Z"}):
        model = await view(jp_fetch, "events", **until)
        since, end = (datetime.fromisoformat(model[k].replace("Z", "+00:00"))
                      for k in ("since", "until"))  # fmt: skip
        assert end - since == timedelta(days=30), (until, model["since"], model["until"])


async def test_a_new_line_in_the_file_is_counted_at_the_next_request(jp_fetch: Fetch) -> None:
    await post(jp_fetch, "ada", [cell("ok")])
    assert [r["cell_runs"] for r in (await view(jp_fetch, "lab-activity"))["rows"]] == [1]
    await post(jp_fetch, "bob", [cell("ok")])
    assert [r["cell_runs"] for r in (await view(jp_fetch, "lab-activity"))["rows"]] == [2]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-13-01T00:00:00Z"}, "until"),
        ({"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "since"),
        ({"since": "1970-01-01T00:00:00Z"}, "since"),
        ({"bucket": "hour"}, "bucket"),
        ({"bucket": ["day", "week"]}, "bucket"),
        ({"schema": "a\x00b"}, "schema"),
        ({"schema": "x" * 1001}, "schema"),
        ({"schema": [f"s{i}" for i in range(51)]}, "schema"),
        # A misspelt filter would answer every event as if filtered: refused, named.
        ({"schemas": "x"}, "schemas"),
        ({"from": "2026-01-01T00:00:00Z"}, "from"),
        ({"x" * 100: "1"}, "an argument"),
    ],
)
async def test_bad_arguments_are_400_naming_the_argument(
    jp_fetch: Fetch, params: dict[str, Any], field: str
) -> None:
    pairs = [(k, v) for k, vs in params.items() for v in ([vs] if isinstance(vs, str) else vs)]
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch("api", "telemetry", "dashboard", "events", params=pairs)
    assert e.value.code == 400
    assert json.loads(e.value.response.body)["message"].startswith(field + ":")


async def test_the_token_and_xsrf_arguments_are_no_filters(
    jp_fetch: Fetch, jp_auth_header: dict[str, str]
) -> None:
    await posted(jp_fetch)
    token = jp_auth_header["Authorization"].split()[-1]
    params = {"token": token, "_xsrf": "unused", "_": "1", "bucket": "week"}
    assert (await view(jp_fetch, "active-users", **params))["bucket"] == "week"


async def test_an_unknown_view_is_404_listing_the_views(jp_fetch: Fetch) -> None:
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch("api", "telemetry", "dashboard", "raw-events")
    assert e.value.code == 404
    assert "active-users" in json.loads(e.value.response.body)["message"]


@pytest.mark.parametrize("path", ["api/telemetry/dashboard", "api/telemetry/dashboard/events",
                                  "telemetry/dashboard"])  # fmt: skip
async def test_without_credentials_nothing(jp_fetch: Fetch, path: str) -> None:
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch(path, headers={"Authorization": ""}, follow_redirects=False)
    assert e.value.code in (302, 403)


FORMULA_ATTRIBUTE = """data-formula-starts='"=+-@\\t\\r"'"""


def test_the_collectors_page_hands_the_browser_the_same_formula_rule() -> None:
    from jupyter_telemetry_ext.core.spreadsheet import FORMULA_STARTS
    from jupyter_telemetry_ext.dashboard.page import render_dashboard

    html = render_dashboard(static_url=lambda path: "/s/" + path, api_url="/api", place="hub")
    assert FORMULA_ATTRIBUTE in html
    assert json.loads(FORMULA_ATTRIBUTE.split("'")[1]) == FORMULA_STARTS


async def test_the_page_loads_the_bundled_charts(jp_fetch: Fetch) -> None:
    html = (await jp_fetch("telemetry", "dashboard")).body.decode()
    assert 'data-api-url="/a%40b/api/telemetry/dashboard"' in html
    assert FORMULA_ATTRIBUTE in html  # the CSV downloads' rule, from core/spreadsheet.py
    for name in ("vega.min.js", "vega-lite.min.js", "vega-embed.min.js", "dashboard.js"):
        assert name in html
    assert "https://" not in html.replace("https://vega.github.io", "")
    script = await jp_fetch("static", "jupyter_telemetry_ext", "vendor", "vega-embed.min.js")
    assert len(script.body) > 10_000


@pytest.fixture
def no_store(jp_server_config: Config) -> None:
    """A server that records into no file or database."""
    jp_server_config.EventLog.handlers = [logging.StreamHandler()]


@pytest.mark.usefixtures("no_store")
async def test_without_a_store_the_dashboard_says_so(jp_fetch: Fetch) -> None:
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch("api", "telemetry", "dashboard", "events")
    assert e.value.code == 503
    assert "FileHandler" in json.loads(e.value.response.body)["message"]


@pytest.fixture
def without_duckdb(monkeypatch: pytest.MonkeyPatch) -> None:
    """DuckDB cannot be imported (the [analysis] extra is not installed)."""
    import sys

    monkeypatch.setitem(sys.modules, "duckdb", None)


@pytest.mark.usefixtures("without_duckdb")
async def test_without_duckdb_the_file_dashboard_says_what_to_install(jp_fetch: Fetch) -> None:
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch("api", "telemetry", "dashboard", "events")
    assert e.value.code == 501
    assert "[analysis]" in json.loads(e.value.response.body)["message"]


def test_wheel_and_sdist_ship_the_chart_libraries_and_their_licenses() -> None:
    """Built from node_modules (ignored by git), packaged like the labextension."""
    import subprocess

    from hatchling.builders.sdist import SdistBuilder
    from hatchling.builders.wheel import WheelBuilder

    from jupyter_telemetry_ext.dashboard.page import VENDOR

    root = Path(__file__).resolve().parent.parent
    wanted = {f"jupyter_telemetry_ext/static/{path}" for path in VENDOR}
    wanted |= {p.replace(".min.js", ".LICENSE.txt") for p in wanted}
    for builder in (WheelBuilder(str(root)), SdistBuilder(str(root))):
        shipped = {f.distribution_path for f in builder.recurse_included_files()}
        assert wanted <= shipped, wanted - shipped
    ignored = subprocess.run(["git", "check-ignore", *sorted(wanted)], cwd=root,
                             capture_output=True, text=True, check=False)  # fmt: skip
    assert set(ignored.stdout.split()) == wanted
