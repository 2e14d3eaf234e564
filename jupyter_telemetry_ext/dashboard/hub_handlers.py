"""The dashboard in the collector: its API and page, of every user's events, for the hub users
the scope `custom:telemetry:read` (or admin) lets see them."""

from __future__ import annotations

import dataclasses
from typing import Any

from tornado import web

from jupyter_telemetry_ext.hub.collector_routes import (
    BASE_URL_SETTING,
    HUB_AUTH_SETTING,
    CollectorHandler,
    hub_user_required,
)
from jupyter_telemetry_ext.server.restapi import EVENTLOG_SETTING, POLICY_SETTING

from .access import SCOPE, Access, access_of
from .handling import answer, check_view, index_model, query_of, source_of
from .members import Members, recorded_ids
from .page import render_dashboard
from .query import Query

MEMBERS_SETTING = "telemetry_dashboard_members"
NO_ACCESS = (f"the dashboard needs the scope {SCOPE} (or {SCOPE}!group=NAME), or a hub admin; "
             "ask the hub's administrator")  # fmt: skip
NO_USERS = ("the collector records no user (record_user = 'none'): a group's events cannot be "
            "told apart, so a viewer scoped to groups sees none")  # fmt: skip


class DashboardHandler(CollectorHandler):
    """What the collector's dashboard routes share: who the viewer is and what they may see."""

    def access(self) -> Access:
        """Return the viewer's access; 403 without any."""
        found = access_of(self.current_user)
        if found is None:
            raise web.HTTPError(403, NO_ACCESS)
        return found

    async def scoped(self, query: Query, access: Access) -> Query:
        """Return the query limited to the users the viewer may see."""
        if access.everything:
            return query
        policy = self.settings[POLICY_SETTING]
        if policy.record_user == "none":
            raise web.HTTPError(403, NO_USERS)
        names = set(access.users)
        for group in sorted(access.groups):
            names |= await self.members().of(group)
        users = recorded_ids(policy.record_user, policy.secret, names)
        return dataclasses.replace(query, users=users)

    def members(self) -> Members:
        """Return the collector's group members cache."""
        members = self.settings.get(MEMBERS_SETTING)
        if members is None:
            hub_auth = self.settings[HUB_AUTH_SETTING]
            members = Members(hub_auth.api_url, hub_auth.api_token, hub_auth.cache_max_age)
            self.settings[MEMBERS_SETTING] = members
        return members


class HubDashboardIndexHandler(DashboardHandler):
    """GET api/telemetry/dashboard: the views this viewer may ask, and the store they read."""

    @hub_user_required
    async def get(self) -> None:
        """List the views; 403 without the scope."""
        access = self.access()
        source = source_of(self.settings, self.settings[EVENTLOG_SETTING])
        self.finish(index_model(source.kind, access.everything))


class HubDashboardViewHandler(DashboardHandler):
    """GET api/telemetry/dashboard/<view>: one view's aggregates of the events the viewer sees."""

    @hub_user_required
    async def get(self, view: str) -> None:
        """Answer the view; a viewer scoped to groups gets their members' events only."""
        access = self.access()
        check_view(view, access.everything)
        query = await self.scoped(query_of(self.request.query_arguments), access)
        eventlog = self.settings[EVENTLOG_SETTING]
        source = source_of(self.settings, eventlog)
        self.set_header("Content-Type", "application/json")
        self.finish(await answer(view, query, source, eventlog))


class HubDashboardPageHandler(DashboardHandler):
    """GET dashboard: the page (a browser logs in through the hub first)."""

    @web.authenticated
    async def get(self) -> None:
        """Render the page for a viewer with access; 403 for anyone else."""
        self.access()
        api = self.settings[BASE_URL_SETTING] + "api/telemetry/dashboard"
        self.finish(render_dashboard(static_url=self.static_url, api_url=api, place="hub"))


def dashboard_routes(base: str) -> list[tuple[str, Any]]:
    """Return the collector's dashboard routes under its base URL (ending in /)."""
    return [
        (base + "api/telemetry/dashboard", HubDashboardIndexHandler),
        (base + "api/telemetry/dashboard/(?P<view>.+)", HubDashboardViewHandler),
        (base + "dashboard", HubDashboardPageHandler),
    ]
