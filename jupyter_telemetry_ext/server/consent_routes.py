"""GET api/telemetry/consent and PUT api/telemetry/consent/<study>: the server user's decisions.

Every decision is also recorded as an event of the consent schema (see `decisions`).
"""

from __future__ import annotations

import json

from jupyter_server.auth.decorator import authorized
from tornado import web

from jupyter_telemetry_ext.core.errors import ConsentError
from jupyter_telemetry_ext.core.recorded_user import recorded_user
from jupyter_telemetry_ext.core.studies import Study

from .decisions import take_decision
from .forwarding.consent_relay import relay
from .restapi import POLICY_SETTING
from .routes import CONSENT_MARKS_SETTING, TelemetryHandler
from .withdrawal import erase_withdrawn


class ConsentHandler(TelemetryHandler):
    """GET api/telemetry/consent: the studies of the server's user, with their decisions."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        """List each study: title, text, version, mode, decision, decided_at, recording."""
        consent, forwarder = self.eventlog.consent, self.forwarder
        if forwarder is None:
            self.finish(json.dumps(consent.model(consent.default_user)))
            return
        try:  # the collector keeps the decisions
            self.finish(json.dumps(await relay(forwarder.settings)))
        except ConsentError as e:
            raise web.HTTPError(e.status, str(e)) from None


class ConsentStudyHandler(TelemetryHandler):
    """PUT api/telemetry/consent/<study>: `{"decision": ..., "version": N}`."""

    @web.authenticated
    @authorized
    async def put(self, study: str) -> None:
        """Record the user's decision as an event, keep it once written, reply the new state."""
        if self.forwarder is not None:  # the collector keeps the decisions
            try:
                reply = await relay(self.forwarder.settings, study, self.request.body)
            except ConsentError as e:
                raise web.HTTPError(e.status, str(e)) from None
            finally:  # the listing's marks follow the decision, whatever came of it
                marks = self.settings.get(CONSENT_MARKS_SETTING)
                if marks is not None:
                    marks.invalidate()
            self.finish(json.dumps(reply))
            return
        user = self.eventlog.consent.default_user
        if user is None:
            raise web.HTTPError(500, "this server does not know its user: no decision is kept")
        policy = self.settings[POLICY_SETTING]
        recorded = recorded_user(policy.record_user, policy.secret, user)
        eventlog = self.eventlog

        async def erase(withdrawn: Study) -> int:  # every event here is the server user's
            return await erase_withdrawn(eventlog, withdrawn, None)

        try:
            reply = await take_decision(
                eventlog, user, recorded, study, self.request.body, erase=erase
            )
        except ConsentError as e:
            if e.status >= 500:
                self.log.error("Telemetry: a consent decision was not kept: %s", e)
            raise web.HTTPError(e.status, str(e)) from None
        self.finish(json.dumps(reply))


consent_handlers = [
    (r"/api/telemetry/consent", ConsentHandler),
    (r"/api/telemetry/consent/(?P<study>[^/]+)", ConsentStudyHandler),
]
