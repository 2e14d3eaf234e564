"""GET {base_url}telemetry: the transparency page, rendered with the extension's templates."""

from __future__ import annotations

import dataclasses

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.extension.handler import ExtensionHandlerJinjaMixin, ExtensionHandlerMixin
from tornado import web

from jupyter_telemetry_ext.core.errors import ConsentError

from .forwarding.consent_relay import relay
from .pagerender import TEMPLATE
from .routes import CONSENT_MARKS_SETTING, TelemetryMixin
from .studykinds import with_own_studies, with_studies
from .studyview import study_views
from .transparency import PageModel, forwarding_model, page_model


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
        model = await self._with_studies(model)
        xsrf = self.xsrf_token.decode("ascii")  # the studies' buttons send it with their PUT
        self.finish(self.render_template(TEMPLATE, model=model, xsrf=xsrf))

    async def _with_studies(self, model: PageModel) -> PageModel:
        """Return the model with the user's studies and the kinds of event each covers: the
        server's own, or the collector's (its studies, and its marks' coverage)."""
        forwarder = self.forwarder
        if forwarder is None:
            return with_own_studies(model, self.eventlog, self.eventlog.consent.default_user)
        try:
            reply = await relay(forwarder.settings)
        except ConsentError as e:
            if e.status == 404:  # a collector without consent routes has no studies
                return model
            self.log.warning("Telemetry: the page cannot list the studies: %s", e)
            return dataclasses.replace(model, studies_unknown=str(e))
        marks = self.settings.get(CONSENT_MARKS_SETTING)
        coverage = await marks.coverage() if marks is not None else {}
        return with_studies(model, study_views(reply.get("studies") or []), coverage)


page_handlers: list[tuple[str, type[web.RequestHandler]]] = [
    (r"/telemetry", TelemetryPageHandler),
]
