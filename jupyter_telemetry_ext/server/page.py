"""GET {base_url}telemetry: the transparency page, rendered with the extension's templates."""

from __future__ import annotations

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.extension.handler import ExtensionHandlerJinjaMixin, ExtensionHandlerMixin
from tornado import web

from .pagerender import TEMPLATE
from .routes import TelemetryMixin
from .transparency import forwarding_model, page_model


class TelemetryPageHandler(
    TelemetryMixin, ExtensionHandlerJinjaMixin, ExtensionHandlerMixin, JupyterHandler
):
    """The page an admin links from a consent notice: what is recorded, and a live view."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        """Render the page: the server's own rules, or the collector's when it forwards (read)."""
        forwarder = self.forwarder
        if forwarder is not None:
            if forwarder.rules is None and forwarder.announced is not None:
                self.log.warning(
                    "Telemetry: the collector's schema listing says nothing this server can "
                    "read of its rules (a collector older than the `policy` field?): the "
                    "transparency page cannot show what the hub records"
                )
            model = forwarding_model(
                self.eventlog, forwarder.settings.collector_url, forwarder.rules
            )
        else:
            model = page_model(self.eventlog, getattr(self.extensionapp, "record_user", "none"))
        self.finish(self.render_template(TEMPLATE, model=model))


page_handlers: list[tuple[str, type[web.RequestHandler]]] = [
    (r"/telemetry", TelemetryPageHandler),
]
