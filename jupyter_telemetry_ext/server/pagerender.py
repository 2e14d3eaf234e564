"""The transparency page's HTML from its model, for an app without jupyter_server's templates.

The collector renders the page with this; the server's handler renders the same template
through jupyter_server's Jinja environment (both escape every value).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import jinja2

from .transparency import PageModel

TEMPLATE = "telemetry.html"
TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
STATIC = Path(__file__).resolve().parent.parent / "static"


@functools.cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)


def render_page(model: PageModel, *, static_url: Callable[[str], str], base_url: str) -> str:
    """Return the page's HTML; `static_url` names where `telemetry.css` and `.js` are served."""
    template = _environment().get_template(TEMPLATE)
    return template.render(
        model=model, static_url=static_url, base_url=base_url, ws_url="", xsrf=""
    )
