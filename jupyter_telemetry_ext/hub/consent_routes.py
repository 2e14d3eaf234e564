"""The collector's GET api/telemetry/consent and PUT api/telemetry/consent/<study>.

The caller is the hub user who owns the token or cookie (a user's server relays with that
user's token), so nobody can read or set another user's decisions; a service's token is
refused (403).
"""

from __future__ import annotations

import json

from tornado import web

from jupyter_telemetry_ext.core.errors import ConsentError
from jupyter_telemetry_ext.core.recorded_user import recorded_user
from jupyter_telemetry_ext.core.studies import Study
from jupyter_telemetry_ext.server.decisions import take_decision
from jupyter_telemetry_ext.server.restapi import EVENTLOG_SETTING, POLICY_SETTING
from jupyter_telemetry_ext.server.withdrawal import erase_withdrawn

from .collector_routes import USER_KEYS, CollectorHandler, hub_user_required
from .consent_user import hub_caller

_NAMES_USER = (
    "a consent request cannot name its user: the decisions are those of the hub user whose "
    "token or cookie sent it (remove 'user', 'username', 'user_name' and '__user__')"
)


class HubConsentHandler(CollectorHandler):
    """GET api/telemetry/consent: the caller's studies (by hub group), with their decisions."""

    def caller(self) -> tuple[str, frozenset[str] | None]:
        """Return the hub user's name and groups (None: the hub did not say); 403 for others."""
        if self.current_user.get("kind", "user") != "user":
            raise web.HTTPError(403, "consent is a hub user's: use a user's or a server's token")
        if USER_KEYS & set(self.request.query_arguments):  # else answered for the caller
            raise web.HTTPError(403, _NAMES_USER)
        return hub_caller(self.current_user)

    @hub_user_required
    async def get(self) -> None:
        """List each study of the caller's: title, text, version, mode, decision, recording."""
        user, groups = self.caller()
        self.finish(json.dumps(self.settings[EVENTLOG_SETTING].consent.model(user, groups)))


class HubConsentStudyHandler(HubConsentHandler):
    """PUT api/telemetry/consent/<study>: the caller's decision, `{"decision", "version"}`."""

    @hub_user_required
    async def put(self, study: str) -> None:
        """Record the caller's decision as an event, keep it once written, reply the state."""
        user, groups = self.caller()
        policy = self.settings[POLICY_SETTING]
        recorded = recorded_user(policy.record_user, policy.secret, user)
        eventlog, body = self.settings[EVENTLOG_SETTING], self.request.body

        async def erase(withdrawn: Study) -> int:
            if recorded is None:  # refused at start: events would name nobody
                msg = "record_user is 'none': the events name no user"
                raise ConsentError(msg, 500)
            return await erase_withdrawn(eventlog, withdrawn, recorded)

        try:
            reply = await take_decision(
                eventlog, user, recorded, study, body, groups=groups, erase=erase
            )
        except ConsentError as e:
            if e.status >= 500:
                self.log.error("Telemetry collector: a consent decision was not kept: %s", e)
            raise web.HTTPError(e.status, str(e)) from None
        self.finish(json.dumps(reply))


def consent_routes(base: str) -> list[tuple[str, type[web.RequestHandler]]]:
    """Return the consent routes under the collector's base URL."""
    return [
        (base + "api/telemetry/consent", HubConsentHandler),
        (base + "api/telemetry/consent/(?P<study>[^/]+)", HubConsentStudyHandler),
    ]
