"""The transparency page of a server that forwards its events to a JupyterHub collector."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import HTTPResponse
from traitlets.config import Config

from jupyter_telemetry_ext.server.transparency import shown_url
from tests.conftest import SHIPPED_SCHEMAS

Fetch = Callable[..., Awaitable[HTTPResponse]]
# Nothing listens on port 9 of the loopback: the events would wait in the spool.
COLLECTOR = "http://admin:s3cret@127.0.0.1:9/services/telemetry/?key=k3y"


@pytest.fixture(scope="module")
def spools() -> Iterator[list[Any]]:
    """Close the forwarders' spools once every server of the module has stopped.

    A server's forwarder keeps its spool (and the spool's lock) open until the process exits,
    so that what is recorded while it stops still reaches the spool; the tests' servers stop
    inside the test process.
    """
    opened: list[Any] = []
    yield opened
    for spool in opened:
        spool.close()


@pytest.fixture
def jp_server_config(jp_server_config: Config, tmp_path: Path) -> Config:
    """Forward to a collector whose URL carries credentials and a query."""
    jp_server_config.TelemetryExtension.schema_paths.append(str(SHIPPED_SCHEMAS))
    jp_server_config.TelemetryExtension.collector_url = COLLECTOR
    jp_server_config.TelemetryExtension.forward_spool_dir = str(tmp_path / "spool")
    return jp_server_config


async def test_the_page_names_the_collector_without_credentials(
    jp_fetch: Fetch, jp_serverapp: Any, spools: list[Any]
) -> None:
    """Every event goes to the hub's collector, whose rules decide; no credentials shown."""
    [extension] = jp_serverapp.extension_manager.extension_apps["jupyter_telemetry_ext"]
    spools.append(extension.forwarder.spool)
    html = (await jp_fetch("telemetry")).body.decode()
    assert '<code class="path">http://127.0.0.1:9/services/telemetry/</code>' in html
    assert "the hub's rules" in html
    assert "s3cret" not in html
    assert "k3y" not in html


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://hub.example.org/services/telemetry/", "https://hub.example.org/services/telemetry/"),
        ("http://u:p@[::1]:8000/services/t/?token=x#f", "http://[::1]:8000/services/t/"),
    ],
)  # fmt: skip
def test_shown_url_keeps_where_it_leads(url: str, shown: str) -> None:
    """Scheme, host, port and path: never a user, password, query or fragment."""
    assert shown_url(url) == shown
