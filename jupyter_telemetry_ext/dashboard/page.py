"""The dashboard page's HTML, for the collector (the server renders it with its own Jinja)."""

from __future__ import annotations

import functools
from collections.abc import Callable

import jinja2

from jupyter_telemetry_ext.core.spreadsheet import FORMULA_STARTS
from jupyter_telemetry_ext.server.pagerender import TEMPLATES

TEMPLATE = "dashboard.html"
# The browser builds the page loads, copied from node_modules into static/vendor at build time.
VENDOR = ("vendor/vega.min.js", "vendor/vega-lite.min.js", "vendor/vega-embed.min.js")


@functools.cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)


def render_dashboard(*, static_url: Callable[[str], str], api_url: str, place: str) -> str:
    """Return the page's HTML; its script reads the views from `api_url`."""
    template = _environment().get_template(TEMPLATE)
    return template.render(static_url=static_url, api_url=api_url, place=place, vendor=VENDOR,
                           formula_starts=FORMULA_STARTS)  # fmt: skip
