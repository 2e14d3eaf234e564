"""The dashboard on a Jupyter server: its API and page, of what this server's own sinks hold."""

from __future__ import annotations

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.extension.handler import ExtensionHandlerJinjaMixin, ExtensionHandlerMixin
from tornado import web

from jupyter_telemetry_ext.core.spreadsheet import FORMULA_STARTS
from jupyter_telemetry_ext.server.routes import TelemetryHandler, TelemetryMixin

from .handling import answer, check_view, index_model, query_of, source_of
from .page import TEMPLATE, VENDOR


class DashboardIndexHandler(TelemetryHandler):
    """GET api/telemetry/dashboard: the views, and the store they read."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        """List the views (the server's owner sees every event this server stored)."""
        source = source_of(self.settings, self.eventlog)
        self.finish(index_model(source.kind, everything=True))


class DashboardViewHandler(TelemetryHandler):
    """GET api/telemetry/dashboard/<view>: one view's aggregates, never events."""

    @web.authenticated
    @authorized
    async def get(self, view: str) -> None:
        """Answer the view for `since`, `until`, `bucket` and `schema` (UTC times)."""
        check_view(view, everything=True)
        query = query_of(self.request.query_arguments)
        source = source_of(self.settings, self.eventlog)
        self.set_header("Content-Type", "application/json")
        self.finish(await answer(view, query, source, self.eventlog))


class DashboardPageHandler(
    TelemetryMixin, ExtensionHandlerJinjaMixin, ExtensionHandlerMixin, JupyterHandler
):
    """GET telemetry/dashboard: the page that draws the views."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        """Render the page; its script asks the API."""
        api = self.base_url.rstrip("/") + "/api/telemetry/dashboard"
        page = self.render_template(TEMPLATE, api_url=api, place="server", vendor=VENDOR,
                                    formula_starts=FORMULA_STARTS)  # fmt: skip
        self.finish(page)


dashboard_handlers: list[tuple[str, type[web.RequestHandler]]] = [
    (r"/api/telemetry/dashboard", DashboardIndexHandler),
    (r"/api/telemetry/dashboard/(?P<view>.+)", DashboardViewHandler),
]
dashboard_page_handlers: list[tuple[str, type[web.RequestHandler]]] = [
    (r"/telemetry/dashboard", DashboardPageHandler),
]
