"""GET {base_url}telemetry: the transparency page, rendered with the extension's templates."""

from __future__ import annotations

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.extension.handler import ExtensionHandlerJinjaMixin, ExtensionHandlerMixin
from tornado import web

from .routes import TelemetryMixin
from .transparency import page_model

TEMPLATE = "telemetry.html"


class TelemetryPageHandler(
    TelemetryMixin, ExtensionHandlerJinjaMixin, ExtensionHandlerMixin, JupyterHandler
):
    """The page an admin links from a consent notice: what is recorded, and a live view."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        """Render the page for the server's EventLog and its current allow-list (read)."""
        record_user = getattr(self.extensionapp, "record_user", "none")
        model = page_model(self.eventlog, record_user=record_user)
        await self.finish(self.render_template(TEMPLATE, model=model))


page_handlers: list[tuple[str, type[web.RequestHandler]]] = [
    (r"/telemetry", TelemetryPageHandler),
]
