"""GET api/telemetry/consent and PUT api/telemetry/consent/<study>: the user's decisions.

Every decision is also recorded as an event of the consent schema (see `server.consent`).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from jupyter_server.auth.decorator import authorized
from tornado import web

from jupyter_telemetry_ext.core.consent import Consent, Decision
from jupyter_telemetry_ext.core.errors import ConsentError
from jupyter_telemetry_ext.core.eventlog import EventLog
from jupyter_telemetry_ext.core.recorded_user import recorded_user
from jupyter_telemetry_ext.core.studies import CONSENT_SCHEMA_ID, Study
from jupyter_telemetry_ext.core.tickets import Ticket

from .restapi import POLICY_SETTING, WRITE_TIMEOUT_SECONDS
from .routes import TelemetryHandler

MAX_BODY_BYTES = 1024  # `{"decision": "declined", "version": N}` and some whitespace


def record_decision(
    eventlog: EventLog, study: Study, decision: Decision, previous: str | None, user: str | None
) -> None:
    """Record a decision as an event of the consent schema (the proof of consent)."""
    data = {
        "study": study.name, "study_version": decision.version, "decision": decision.decision,
        "mode": study.mode, "previous": previous, "erased": None,
    }  # fmt: skip
    context = {"__user__": user} if user is not None else None
    version = eventlog.latest_version(CONSENT_SCHEMA_ID)
    eventlog.record_event(CONSENT_SCHEMA_ID, version, data, context=context)


class ConsentHandler(TelemetryHandler):
    """GET api/telemetry/consent: the studies of the server's user, with their decisions."""

    @property
    def consent(self) -> Consent:
        """Return the EventLog's studies and decisions."""
        return self.eventlog.consent

    @web.authenticated
    @authorized
    async def get(self) -> None:
        """List each study: title, text, version, mode, decision, decided_at, recording."""
        self.finish(json.dumps(self.consent.model(self.consent.default_user)))


class ConsentStudyHandler(ConsentHandler):
    """PUT api/telemetry/consent/<study>: `{"decision": ..., "version": N}`."""

    @web.authenticated
    @authorized
    async def put(self, study: str) -> None:
        """Record the user's decision as an event, keep it once written, reply the new state."""
        user = self.consent.default_user
        if user is None:
            raise web.HTTPError(500, "this server does not know its user: no decision is kept")
        try:
            found, decision, previous = self.consent.check(user, study, self._body())
        except ConsentError as e:
            raise web.HTTPError(e.status, str(e)) from None
        await self._prove(found, decision, previous, user)
        try:
            self.consent.keep(user, decision)
        except OSError as e:
            self.log.error("Telemetry: a consent decision cannot be written: %s", e)
            raise web.HTTPError(500, "the decision could not be written; retry") from None
        reply = {
            **asdict(decision),
            "recording": self.consent.recording(found, user),
            "erased": None,
        }
        self.finish(json.dumps(reply))

    def _body(self) -> Any:
        """Return the JSON body; raise HTTPError 400 when it is not JSON (in UTF-8) or too long."""
        body = self.request.body
        if len(body) > MAX_BODY_BYTES:
            msg = f"body: a decision is at most {MAX_BODY_BYTES} bytes"
            raise web.HTTPError(400, msg)
        try:
            return json.loads(body.decode("utf-8"))
        except ValueError:  # UnicodeDecodeError included
            raise web.HTTPError(400, "body: not valid JSON in UTF-8") from None

    async def _prove(
        self, study: Study, decision: Decision, previous: str | None, user: str
    ) -> None:
        """Record the decision's event and wait until every handler wrote it (else 503)."""
        policy = self.settings[POLICY_SETTING]
        ticket = Ticket()
        with self.eventlog.tracking(ticket):
            record_decision(self.eventlog, study, decision, previous,
                            recorded_user(policy.record_user, policy.secret, user))  # fmt: skip
        if not await ticket.wait(WRITE_TIMEOUT_SECONDS) or not ticket.ok:
            msg = "the decision's event could not be written, so it is not kept; retry"
            raise web.HTTPError(503, msg)


consent_handlers = [
    (r"/api/telemetry/consent", ConsentHandler),
    (r"/api/telemetry/consent/(?P<study>[^/]+)", ConsentStudyHandler),
]
