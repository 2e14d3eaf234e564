"""`jupyter telemetry collect`: the JupyterHub service that records every user's events.

The collector runs the same pipeline as the server extension (schemas, allow-list, redaction,
limits, duplicate ids, sinks) under the hub admin's config, and takes the user of each event
from the hub: the owner of the token (or OAuth cookie) that posted it. jupyterhub (the `[hub]`
extra) is imported only when the collector starts (see `collector_routes`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import os
import secrets
import signal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from traitlets import Bool, Enum, Float, Int, List, TraitError, Unicode, default, validate

from jupyter_telemetry_ext.core.command import Command
from jupyter_telemetry_ext.core.config_failure import config_failure
from jupyter_telemetry_ext.core.discovery import register_discovered, schema_folders
from jupyter_telemetry_ext.core.eventlog import EventLog
from jupyter_telemetry_ext.core.recorded_user import checked_secret, warn_user_not_kept
from jupyter_telemetry_ext.core.redact_url import safe_url
from jupyter_telemetry_ext.core.studies import CONSENT_SCHEMA_ID
from jupyter_telemetry_ext.core.tombstones import sources_of
from jupyter_telemetry_ext.server.consent import CONSENT_FILE, start_consent
from jupyter_telemetry_ext.server.reception import Policy
from jupyter_telemetry_ext.server.server_events import server_schemas
from jupyter_telemetry_ext.server.wire import Limits
from jupyter_telemetry_ext.server.withdrawal import check_erasure

from .audit_gaps import AuditGaps
from .consent_store import pg_decisions, refresh_decisions
from .gap_tracker import GapTracker

GC_YOUNG_THRESHOLD = 20_000
# The hub's own events (JupyterHub's, and the hub-action audit records that the hub itself
# writes): never posted by users, who could otherwise write actions in someone else's name.
HUB_SCHEMAS = (
    "https://schema.jupyter.org/jupyterhub/",
    "https://events.jupyter.org/jupyter_telemetry_ext/hub-action",
)
AUDIT_GAP = "https://events.jupyter.org/jupyter_telemetry_ext/audit-gap"  # the collector's own
AUDIT_GAPS_SETTING = "telemetry_audit_gaps"
INSTALL_HUB = "the collector needs JupyterHub: pip install 'jupyter_telemetry_ext[hub]'"


# As the hub's own lines beside them in its log: a level, a time and the logger on each line.
LOG_FORMAT = "[%(levelname)1.1s %(asctime)s.%(msecs).03d %(name)s] %(message)s"
ROUTED_LOGGERS = ("jupyter_telemetry_ext", "tornado")


class TelemetryCollector(Command):
    """Serve the telemetry REST API as a JupyterHub service; record through `c.EventLog`."""

    name = "jupyter-telemetry-collect"
    description = """Run the telemetry collector: a JupyterHub service (managed, listening on
    $JUPYTERHUB_SERVICE_URL, or external with --url) that serves POST api/telemetry/events and
    GET api/telemetry/schemas to hub users and records their events through the EventLog of its
    config file (c.EventLog.*, c.TelemetryCollector.*). SIGINT or SIGTERM writes every accepted
    event, then exits."""
    examples = "jupyter telemetry collect --config /etc/jupyterhub/telemetry_config.py"
    aliases = {**Command.aliases, "url": "TelemetryCollector.url"}  # noqa: RUF012 - traitlets reads it
    # An exception in a config file stops the collector: run without the file's handlers and
    # allow-list, it would answer "filtered" to every post and throw every event away.
    raise_config_file_errors = Bool(True)

    url = Unicode(
        help="""Where the collector listens, e.g. `http://127.0.0.1:10101`. Empty (the default):
        $JUPYTERHUB_SERVICE_URL, which the hub sets for a managed service. Only the host and port
        are used; the routes live under `base_url`.""",
    ).tag(config=True)

    base_url = Unicode(
        help="""The path prefix of every route, as the proxy forwards it, e.g.
        `/services/telemetry/`. Empty (the default): $JUPYTERHUB_SERVICE_PREFIX, which the hub
        sets for a managed service, else `/services/<service_name>/`.""",
    ).tag(config=True)

    service_name = Unicode(
        help="""The service's name in `c.JupyterHub.services`. Empty (the default):
        $JUPYTERHUB_SERVICE_NAME, else "telemetry". Without $JUPYTERHUB_OAUTH_ACCESS_SCOPES,
        a request needs the scope `access:services!service=<service_name>`.""",
    ).tag(config=True)

    schema_paths = List(
        Unicode(),
        help="""Folders (or single files) searched for event schemas (`*.yaml`, `*.yml`,
        `*.json`, in sub-folders too), in addition to `telemetry/schemas` in every Jupyter data
        path, as the extension does. Empty (the default): only the data paths are searched.""",
    ).tag(config=True)

    server_events = Bool(
        True,
        help="""True (the default): register jupyter_server's own event schemas (kernel actions,
        contents operations, gateway requests), so that single-user servers can forward them;
        `c.EventLog.allowed_schemas` decides what is recorded. False: they are unknown (400).""",
    ).tag(config=True)

    max_body_size = Int(
        1 << 20,
        min=1,
        help="""Largest request body accepted by POST api/telemetry/events, in bytes, after
        inflating a gzip body (default 1048576, 1 MiB); a larger body is answered 413 and
        nothing is recorded. At least 1.""",
    ).tag(config=True)

    max_batch_events = Int(
        500,
        min=1,
        help="""Most events accepted in one batch (default 500); a larger batch is answered 413
        and nothing is recorded. At least 1.""",
    ).tag(config=True)

    max_event_size = Int(
        32 << 10,
        min=1,
        help="""Largest event accepted, in bytes of compact JSON (default 32768, 32 KiB): a
        single larger event is answered 413, one inside a batch is rejected. At least 1.""",
    ).tag(config=True)

    rate_limit = Float(
        20.0,
        min=0.0,
        help="""Requests a second each hub user may send to POST api/telemetry/events, on
        average (default 20; a batch is one request); over it the answer is 429 with
        `Retry-After`. 0: no limit.""",
    ).tag(config=True)

    rate_burst = Int(
        100,
        min=1,
        help="""Requests a hub user may send at once before `rate_limit` applies: the size of
        each user's token bucket (default 100). At least 1.""",
    ).tag(config=True)

    duplicate_window = Float(
        86400.0,
        min=0.0,
        help="""Seconds during which a repeat of an event `id` a hub user already had recorded
        is answered `duplicate` and not written again (default 86400, 24 h), so that retried
        batches are recorded once, across restarts of the collector too (`duplicate_journal`).
        Keep it at least `event_time_window`: a server's forwarding spool may resend an event
        until its time is that old (older ones are rejected). 0: ids are not remembered.""",
    ).tag(config=True)

    duplicate_journal = Unicode(
        help="""Folder where the ids recorded within `duplicate_window` are also kept on disk
        (append-only files of mode 0600, at most about twice `duplicate_capacity` ids, read back
        at start; each id under a keyed hash of its sender, never a name), so that an event a
        forwarding spool resends after the collector restarted (a crash included) is still a
        duplicate. Each collector process needs a folder of its own.
        Default: `<file>.ids` beside the file the first `logging.FileHandler` of
        `c.EventLog.handlers` writes; none when no handler writes a file (a PostgreSQL store
        keeps each (user, id) once by its key). Empty: ids are kept in memory only, and a
        restart forgets them.""",
    ).tag(config=True)

    duplicate_capacity = Int(
        1_000_000,
        min=1,
        help="""Most event ids remembered for `duplicate_window` (default 1000000); beyond it
        the oldest are forgotten, so memory stays bounded. At least 1.""",
    ).tag(config=True)

    duplicate_capacity_per_user = Int(
        100_000,
        min=1,
        help="""Most event ids remembered for each hub user (default 100000, and never more
        than `duplicate_capacity`); beyond it that user's own oldest ids are forgotten.
        At least 1.""",
    ).tag(config=True)

    event_time_window = Float(
        86400.0,
        min=0.0,
        help="""Seconds an event's `timestamp` (corrected by the batch's `sent_at`) may be away
        from the collector's receive time (default 86400, 24 h); an event further off is
        rejected. 0: any time is accepted.""",
    ).tag(config=True)

    record_user = Enum(
        ["none", "hashed", "username"],
        default_value="none",
        help="""Whether the collector adds who posted each event, as the capsule field
        `__user__` (a `user-identifier`: kept only where the allow-list allows that category):
        "none" (the default) adds nothing; "hashed" adds an HMAC-SHA256 of the hub user name
        keyed by `user_hash_secret`; "username" adds the hub user name. Always the owner of the
        token or cookie that posted, as the hub says; never taken from the body.""",
    ).tag(config=True)

    consent_file = Unicode(
        "",
        help="""The JSON file (mode 0600, rewritten atomically) where the collector keeps each
        hub user's consent decisions on `EventLog.studies`, by hub user name. Empty (the
        default): `jupyter_telemetry_ext_consent.json` in the Jupyter data dir. Unused
        without studies, and when a `PostgresEventHandler` is set: the decisions are then kept
        in its database, in the table `telemetry_consent` (beside `telemetry_events`).""",
    ).tag(config=True)

    user_hash_secret = Unicode(
        "",
        help="""The key of the "hashed" `record_user` mode and of the keys by which PostgreSQL
        stores each posted event once (whatever `record_user` says): one key for the whole
        hub, so a user's hash and an event's key are the same whichever replica recorded it.
        Empty (the default): a random key is generated once and kept in the Jupyter data dir
        (`jupyter_telemetry_ext_user_secret`, mode 0600); replicas must share it. A key
        must have at least 16 characters: a shorter one stops the collector at start.""",
    ).tag(config=True)

    @validate("user_hash_secret")
    def _validate_user_hash_secret(self, proposal: Any) -> str:
        try:
            return checked_secret(proposal["value"])
        except ValueError as e:
            msg = f"{type(self).__name__}.{e}"
            raise TraitError(msg) from None

    reply_after_write = Bool(
        True,
        help="""True (the default): POST answers only after the EventLog handlers wrote its
        events (503 with Retry-After when one failed; a retry with the same ids completes it),
        so what a forwarding spool deletes once acknowledged is written. False: it answers once
        the events are queued; SIGINT and SIGTERM write them before exiting, a SIGKILL loses
        them, acknowledged.""",
    ).tag(config=True)

    shutdown_timeout = Float(
        10.0,
        min=0.0,
        help="""Seconds SIGINT/SIGTERM waits for the EventLog handlers to write the events
        still queued (default 10; the hub sends SIGTERM 30 s after SIGINT); what is left is
        lost and logged. 0: do not wait.""",
    ).tag(config=True)

    cookie_secret = Unicode(
        help="""The key that signs the collector's OAuth cookie (hex or text). Empty (the
        default): a random key per process, so a browser logs in again after a restart; set the
        same key on every replica behind one proxy.""",
    ).tag(config=True)

    auth_cache_max_age = Int(
        60,
        min=1,
        help="""Seconds the collector keeps the hub's answer about a token or cookie (default
        60): a token revoked on the hub is still accepted for up to this long. Lower: revoked
        tokens stop sooner, at the cost of a request to the hub's API per token that often.
        A token the hub refused is remembered as refused for as long (by a hash, never the
        token): a token the hub creates after it was refused works after at most this long.
        At least 1 (JupyterHub's HubAuth would read 0 as "forever").""",
    ).tag(config=True)

    hub_lookup_concurrency = Int(
        4,
        min=1,
        help="""Most requests to the hub's API about tokens the collector has no answer for
        (default 4), at a time: for tokens the hub accepted before, and as many for the others,
        so that a flood of unknown tokens waits on its own. Requests with the same token share
        one; a cached answer (`auth_cache_max_age`) asks nothing. At least 1.""",
    ).tag(config=True)

    hub_lookup_timeout = Float(
        5.0,
        min=0.0,
        help="""Seconds a request waits for its turn to ask the hub about its token (default 5);
        past it the collector answers 503 with Retry-After, and the client retries later.
        0: answer 503 at once when `hub_lookup_concurrency` requests are asking.""",
    ).tag(config=True)

    refused_tokens = Int(
        10_000,
        min=1,
        help="""Most tokens remembered as refused by the hub (default 10000, about 2 MB), each
        for `auth_cache_max_age` seconds; beyond it the oldest are forgotten, and asked about
        again if they come back. As many tokens the hub accepted in the last day are
        remembered, for their own turn (`hub_lookup_concurrency`). At least 1.""",
    ).tag(config=True)

    audit_gap_grace = Float(
        60.0,
        min=0.0,
        help="""Seconds a skipped `audit_seq` of a server's audit stream may still arrive (a
        retried event comes after later ones) before the collector records an `audit-gap` event
        for it (default 60). 0: record it as soon as a later number arrives.""",
    ).tag(config=True)

    audit_streams = Int(
        100_000,
        min=1,
        help="""Most audit streams (one per server process) the collector follows to notice
        gaps (default 100000); beyond it the least recently active are forgotten, and a gap
        across that is left to `jupyter telemetry audit check`. At least 1.""",
    ).tag(config=True)

    audit_streams_per_user = Int(
        64,
        min=1,
        help="""Most audit streams followed for each hub user (default 64): a user's own least
        recently active stream is forgotten first, so nobody can push out another's. At
        least 1.""",
    ).tag(config=True)

    eventlog: EventLog
    audit_gaps: Any = None

    @default("log_format")
    def _default_log_format(self) -> str:
        return LOG_FORMAT

    @default("log_datefmt")
    def _default_log_datefmt(self) -> str:
        return "%Y-%m-%d %H:%M:%S"

    @default("service_name")
    def _default_service_name(self) -> str:
        return os.environ.get("JUPYTERHUB_SERVICE_NAME", "") or "telemetry"

    @default("duplicate_journal")
    def _default_duplicate_journal(self) -> str:
        # Beside the store it protects: a file of this deployment's, never shared with another
        # collector on the machine. A PostgreSQL store needs none: its (user, id) key holds.
        eventlog: EventLog | None = getattr(self, "eventlog", None)
        for handler in eventlog.handlers if eventlog is not None else ():
            if isinstance(handler, logging.FileHandler):
                return f"{handler.baseFilename}.ids"
        return ""

    @default("url")
    def _default_url(self) -> str:
        return os.environ.get("JUPYTERHUB_SERVICE_URL", "")

    @default("base_url")
    def _default_base_url(self) -> str:
        prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "")
        return prefix or f"/services/{self.service_name}/"

    def load_config_file(self, suppress_errors: bool = True) -> None:  # type: ignore[override]
        """Load the config files; one that raises stops the collector with where and why."""
        try:
            super().load_config_file(suppress_errors)
        except Exception as e:  # anything a config file raises: it is the admin's Python
            self.fail(f"collect: the config file failed, so nothing would be recorded: "
                      f"{config_failure(e)}")  # fmt: skip

    def start(self) -> None:
        """Check the config, then serve until SIGINT or SIGTERM."""
        if self.config_file and not Path(self.config_file).is_file():
            self.fail(f"collect: {self.config_file}: no such config file")
        try:
            from . import collector_routes
        except ImportError as e:
            self.fail(f"collect: {INSTALL_HUB} ({e})")
        if not self.url:
            self.fail("collect: name where to listen with --url (no $JUPYTERHUB_SERVICE_URL)")
        self._route_logs()
        self.eventlog = self._eventlog()
        app = collector_routes.make_app(self)
        # What start-up made lives as long as the process: out of the cyclic garbage collector's
        # full passes, which would otherwise walk it again every few thousand events.
        gc.collect()
        gc.freeze()
        # A batch makes thousands of short-lived objects: young passes every 20,000, not 700.
        gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
        asyncio.run(self._serve(app))

    def _route_logs(self) -> None:
        """Write the sinks', the routes' and tornado's records through the collector's handler,
        with its level and time (without, Python wrote their bare message, warnings only)."""
        for name in ROUTED_LOGGERS:
            logger = logging.getLogger(name)
            logger.parent, logger.propagate = self.log, True
        # Tornado's and HubAuth's warnings and errors, as before: a line per request answered
        # would fill the hub's log.
        logging.getLogger("tornado").setLevel(max(self.log.getEffectiveLevel(), logging.WARNING))

    def _eventlog(self) -> EventLog:
        """Create the EventLog and register the schemas found, as the extension does."""
        try:
            eventlog = EventLog(parent=self, background=True)
        except TraitError as e:
            self.fail(f"collect: the EventLog cannot be built from the config: {e}")
        found = register_discovered(eventlog, schema_folders(self.schema_paths), self.log)
        if self.server_events:
            found += register_server_schemas(eventlog, self.log)
        self.log.info("Telemetry collector: %d event schemas registered", len(found))
        if not eventlog.allowed_schemas:
            self.log.warning("Telemetry collector: c.EventLog.allowed_schemas is empty")
        warn_user_not_kept(self.log, eventlog, self.record_user, open_to_users)
        consent_file = Path(self.consent_file or Path(self.data_dir) / CONSENT_FILE)
        in_store = pg_decisions(eventlog, self.record_user, self.user_hash_secret, self.data_dir)
        start_consent(eventlog, consent_file, self._refuse, self.log, None, store=in_store)
        check_erasure(eventlog, self.record_user, self._refuse, self.log)

        if 0 < self.duplicate_window < (self.event_time_window or float("inf")):
            self.log.warning(
                "Telemetry collector: duplicate_window (%g s) is shorter than event_time_window "
                "(%g s; 0: any): a resend older than the window is written again",
                self.duplicate_window, self.event_time_window,
            )  # fmt: skip
        return eventlog

    def _refuse(self, failures: list[str]) -> None:
        """Stop the collector at start, saying why."""
        self.fail("collect: " + "; ".join(failures))

    def settings(self) -> dict[str, Any]:
        """Return the tornado settings the collector's handlers read."""
        from jupyter_telemetry_ext.server.restapi import (
            EVENTLOG_SETTING,
            LIMITS_SETTING,
            POLICY_SETTING,
        )

        limits = Limits(self.max_body_size, self.max_batch_events, self.max_event_size,
                        options="TelemetryCollector")  # fmt: skip
        policy = Policy.from_options(self)
        policy.tombstones = tuple(sources_of(self.eventlog.handlers))
        tracker = GapTracker(self.audit_gap_grace, self.audit_streams, self.audit_streams_per_user)
        self.audit_gaps = AuditGaps(self.eventlog, tracker)
        return {
            EVENTLOG_SETTING: self.eventlog,
            LIMITS_SETTING: limits,
            POLICY_SETTING: policy,
            AUDIT_GAPS_SETTING: self.audit_gaps,
            "cookie_secret": self.cookie_secret or secrets.token_hex(32),
        }

    async def _serve(self, app: Any) -> None:
        """Listen; on SIGINT or SIGTERM stop listening, write what was accepted, return."""
        address = urlsplit(self.url)
        server = app.listen(address.port or 80, address.hostname or "127.0.0.1", xheaders=True)
        self.log.info(
            "Telemetry collector listening on %s%s", safe_url(self.url).rstrip("/"), self.base_url
        )
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopping.set)
        sweeping = asyncio.create_task(self._sweep(stopping))
        refreshing = asyncio.create_task(refresh_decisions(self.eventlog.consent, stopping))
        await stopping.wait()
        server.stop()
        await sweeping
        await refreshing
        if self.audit_gaps is not None:
            self.audit_gaps.close()  # a gap noticed is recorded now rather than forgotten
        await self._flush()

    async def _sweep(self, stopping: asyncio.Event) -> None:
        """Record the audit gaps held past their grace, every few seconds, until stopping."""
        period = min(max(self.audit_gap_grace / 4, 0.5), 15.0)
        while not stopping.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stopping.wait(), period)
            if self.audit_gaps is not None:
                self.audit_gaps.sweep()

    async def _flush(self) -> None:
        """Write every accepted event (off the event loop), then close the sinks."""
        written = await asyncio.to_thread(self.eventlog.flush, self.shutdown_timeout)
        if written:
            self.eventlog.close(self.shutdown_timeout)
            self.log.info("Telemetry collector: every accepted event written; stopped")
        else:
            pending = self.eventlog.pending
            self.log.error("Telemetry collector: %d events were not written on shutdown", pending)


def register_server_schemas(eventlog: EventLog, log: Any) -> list[Any]:
    """Register jupyter_server's event schemas exactly as the extension gets them."""
    from jupyter_events import EventLogger
    from jupyter_server import DEFAULT_EVENTS_SCHEMA_PATH

    logger = EventLogger()
    for path in sorted(Path(DEFAULT_EVENTS_SCHEMA_PATH).glob("**/*.yaml")):
        logger.register_event_schema(path)
    registered = []
    for document in server_schemas(logger):
        try:
            registered.append(eventlog.register_schema(document))
        except ValueError as e:
            log.warning("Server event schema not registered: %s", e)
    return registered


def open_to_users(schema: Any) -> bool:
    """Return whether hub users may post events of `schema`: any but the hub's and ours."""
    return _open_to_users(str(schema.id))


@functools.lru_cache(maxsize=1024)
def _open_to_users(schema_id: str) -> bool:
    return not schema_id.startswith(HUB_SCHEMAS) and schema_id not in {AUDIT_GAP, CONSENT_SCHEMA_ID}
