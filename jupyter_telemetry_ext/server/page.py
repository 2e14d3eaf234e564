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
        app = self.extensionapp
        forwarding = getattr(app, "forwarder", None) is not None
        collector_url = getattr(app, "collector_url", "") if forwarding else ""
        model = page_model(self.eventlog, getattr(app, "record_user", "none"), collector_url)
        await self.finish(self.render_template(TEMPLATE, model=model))


page_handlers: list[tuple[str, type[web.RequestHandler]]] = [
    (r"/telemetry", TelemetryPageHandler),
]
