"""TelemetryExtension: the Jupyter server extension that records events posted by frontends."""

from __future__ import annotations

import asyncio
import atexit
import os
from pathlib import Path
from typing import Any

from jupyter_server.extension.application import ExtensionAppJinjaMixin
from traitlets import Bool, Enum, Float, Int, List, TraitError, Unicode, default, validate

from jupyter_telemetry_ext._version import __version__
from jupyter_telemetry_ext.core.discovery import register_discovered, schema_folders
from jupyter_telemetry_ext.core.errors import ForwardingRefusedError, SpoolFolderError
from jupyter_telemetry_ext.core.eventlog import EventLog
from jupyter_telemetry_ext.core.recorded_user import checked_secret, warn_user_not_kept
from jupyter_telemetry_ext.core.redact_url import safe_url
from jupyter_telemetry_ext.core.schema import EventSchema
from jupyter_telemetry_ext.core.tombstones import sources_of
from jupyter_telemetry_ext.dashboard.server_handlers import (
    dashboard_handlers,
    dashboard_page_handlers,
)
from jupyter_telemetry_ext.server.forwarding.forwarder import (
    COLLECTOR_URL_ENV,
    SPOOL_FOLDER,
    Forwarder,
    ForwardSettings,
)
from jupyter_telemetry_ext.server.forwarding.metrics import ForwardingMetrics

from .audit.install import AUDIT_KINDS, install_audit, stop_audit
from .audit.required import SCHEMAS as AUDIT_SCHEMAS
from .audit.required import audits_of, require_audit
from .config_files import StrictConfigApp
from .consent import CONSENT_FILE, start_consent
from .consent_routes import consent_handlers
from .events_route import server_events_handlers
from .forwarding.consent_marks import ConsentMarks
from .logaccess import warn_open_logs
from .metrics import TelemetryCollector, register, unregister
from .nowhere import written_nowhere
from .page import page_handlers
from .principal import server_user, watch_made_up_users
from .reception import Policy
from .restapi import EVENTLOG_SETTING, LIMITS_SETTING, POLICY_SETTING
from .routes import (
    ALL_SCHEMAS_SETTING,
    BUFFER_SETTING,
    CONSENT_MARKS_SETTING,
    FORWARDER_SETTING,
    SUBSCRIBERS_SETTING,
    default_handlers,
)
from .server_events import record_server_events, warn_unredacted_handlers
from .subscribers import Subscribers
from .wire import Limits
from .withdrawal import check_erasure


class TelemetryExtension(ExtensionAppJinjaMixin, StrictConfigApp):
    """Records validated, allow-listed events posted by frontends, through `c.EventLog.*`."""

    name = "jupyter_telemetry_ext"
    version = __version__
    description = "Telemetry: validated, allow-listed, privacy-redacted events from frontends."

    schema_paths = List(
        Unicode(),
        help="""Folders (or single files) searched for event schemas (`*.yaml`, `*.yml`,
        `*.json`, in sub-folders too), in addition to `telemetry/schemas` in every Jupyter data
        path (`jupyter --paths`). Empty (the default): only the data paths are searched.""",
    ).tag(config=True)

    max_body_size = Int(
        1 << 20,
        min=1,
        help="""Largest request body accepted by POST api/telemetry/events, in bytes (default
        1048576, 1 MiB); a larger body is answered 413 and nothing is recorded. At least 1.""",
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

    subscriber_buffer = Int(
        1000,
        min=1,
        help="""How many recorded events wait for each websocket subscriber that reads slowly
        (default 1000); beyond that the oldest are dropped and counted. At least 1.""",
    ).tag(config=True)

    max_subscribers = Int(
        50,
        min=0,
        help="""Most websocket subscribers (api/telemetry/subscribe) open at once on the server
        (default 50): each costs every recorded event a call and holds a buffer. Over it a new
        one is refused with 503 before the socket opens. 0: no limit.""",
    ).tag(config=True)

    max_subscribers_per_user = Int(
        10,
        min=0,
        help="""Most websocket subscribers one user may have open at once (default 10); over it
        a new one is refused with 429 before the socket opens. Users are told apart as for
        `rate_limit`. 0: no limit (max_subscribers still applies).""",
    ).tag(config=True)

    shutdown_timeout = Float(
        30.0,
        min=0.0,
        help="""Seconds the server's stop waits for the EventLog handlers to write the events
        still queued (default 30); what is left after that is lost and logged.
        0: do not wait.""",
    ).tag(config=True)

    server_events = Bool(
        True,
        help="""True (the default): record jupyter_server's own events (kernel actions,
        contents operations, gateway requests) through this extension's EventLog, so that
        `c.EventLog.allowed_schemas` and its redaction govern them too (they are
        `personal-data` schemas: their properties are redacted unless allowed). Then the
        extension also takes over jupyter_server's POST api/events, so that a client cannot
        forge those events (403 for schemas not open to frontends; the rest is never recorded).
        False: leave them to jupyter_server's own event logger only.""",
    ).tag(config=True)

    rate_limit = Float(
        20.0,
        min=0.0,
        help="""Requests a second each user may send to POST api/telemetry/events, on average
        (default 20; a batch is one request); over it the answer is 429 with `Retry-After`,
        other users are unaffected, and the refusal is counted (`rate_limited`). A user is the
        identity provider's user; a request that jupyter_server authenticated by its token
        without a login cookie (an API client) counts as that token. 0: no limit.""",
    ).tag(config=True)

    rate_burst = Int(
        100,
        min=1,
        help="""Requests a user may send at once before `rate_limit` applies: the size of each
        user's token bucket (default 100). At least 1.""",
    ).tag(config=True)

    duplicate_window = Float(
        86400.0,
        min=0.0,
        help="""Seconds during which a repeat of an event `id` a user already had recorded is
        answered `duplicate` and not written again (default 86400, 24 h), so that clients may
        retry safely. 0: ids are not remembered (a retry is recorded again).""",
    ).tag(config=True)

    duplicate_capacity = Int(
        100_000,
        min=1,
        help="""Most event ids remembered for `duplicate_window` (default 100000); beyond it the
        oldest are forgotten, so memory stays bounded. At least 1.""",
    ).tag(config=True)

    duplicate_capacity_per_user = Int(
        10_000,
        min=1,
        help="""Most event ids remembered for each user (default 10000, and never more than
        `duplicate_capacity`); beyond it that user's own oldest ids are forgotten, so one
        user's flood cannot make another user's retry be recorded twice. Users are told apart
        as for `rate_limit`. At least 1.""",
    ).tag(config=True)

    event_time_window = Float(
        86400.0,
        min=0.0,
        help="""Seconds an event's `timestamp` (corrected by the batch's `sent_at`) may be away
        from the server's receive time (default 86400, 24 h); an event further off is rejected
        with the reason. 0: any time is accepted.""",
    ).tag(config=True)

    record_user = Enum(
        ["none", "hashed", "username"],
        default_value="none",
        help="""Whether the server adds who posted each event, as the capsule field `__user__`
        (a `user-identifier`: kept only where the allow-list allows that category): "none" (the
        default) adds nothing; "hashed" adds an HMAC-SHA256 of the authenticated user name
        keyed by `user_hash_secret`; "username" adds the name. Never taken from the client,
        never derived from a token: an API client that jupyter_server authenticated by its
        token without a login cookie has the random anonymous name it gets per request.""",
    ).tag(config=True)

    consent_file = Unicode(
        "",
        help="""The JSON file (mode 0600, rewritten atomically) where this server keeps its
        user's consent decisions on `EventLog.studies`. Empty (the default): the file
        `jupyter_telemetry_ext_consent.json` in the Jupyter data dir. Unused without studies.""",
    ).tag(config=True)

    user_hash_secret = Unicode(
        "",
        help="""The key of the "hashed" `record_user` mode, and of the keys by which PostgreSQL
        stores each posted event once (whatever `record_user` says). Empty (the default): a
        random key is generated once and kept in the Jupyter data dir, in the file
        `jupyter_telemetry_ext_user_secret` (mode 0600); set the same key on every server
        whose hashes must match (e.g. all of a JupyterHub's single-user servers). A key must
        have at least 16 characters: a shorter one stops the server at start.""",
    ).tag(config=True)

    @validate("user_hash_secret")
    def _validate_user_hash_secret(self, proposal: Any) -> str:
        try:
            return checked_secret(proposal["value"])
        except ValueError as e:
            msg = f"{type(self).__name__}.{e}"
            raise TraitError(msg) from None

    reply_after_write = Bool(
        False,
        help="""True: POST api/telemetry/events answers only after the EventLog handlers wrote
        (and flushed) its events, so an event that got a 2xx survives even a SIGKILL of the
        server, at the cost of latency; when a handler fails to write one, the answer is 503
        with Retry-After, and a retry with the same id is written only to the handlers that
        missed it. False (the default): it answers once the events are
        queued; a SIGKILL loses the events still queued (see `jupyter_telemetry_queue_pending`),
        while SIGTERM and Ctrl-C write them first.""",
    ).tag(config=True)

    collector_url = Unicode(
        help="""The root URL of a telemetry collector (a JupyterHub service serving this REST
        API, e.g. `http://127.0.0.1:8000/services/telemetry/`) to which every accepted event
        (frontend posts and jupyter_server's own events) is forwarded, before this server's
        allow-list and redaction, through an on-disk spool. The default is the environment
        variable `JUPYTER_TELEMETRY_COLLECTOR_URL` (set it with `c.Spawner.environment`). Empty:
        nothing is forwarded.""",
    ).tag(config=True)

    collector_token_env = Unicode(
        "JUPYTERHUB_API_TOKEN",
        help="""The environment variable holding the token sent to the collector as
        `Authorization: token ...` (default `JUPYTERHUB_API_TOKEN`, the single-user server's
        token). The token is never logged. Empty, or an unset variable: no token is sent (the
        collector answers 401, logged once; events wait in the spool).""",
    ).tag(config=True)

    forward_spool_dir = Unicode(
        help="""The folder of the forwarding spool, where accepted events wait (unredacted:
        mode 0700) until the collector acknowledged them; a restart sends what is left.
        Empty (the default): `jupyter_telemetry_ext_forward` in the Jupyter data dir. Servers
        sharing the folder each send only the files stamped with their hub user and server
        name. It must be owned by the server's uid and writable by nobody else: otherwise
        forwarding does not start and every event is refused (503).""",
    ).tag(config=True)

    forward_spool_bytes = Int(
        100 << 20,
        min=4096,
        help="""Largest size of the forwarding spool in bytes (default 104857600, 100 MiB);
        beyond it `forward_when_full` applies. At least 4096.""",
    ).tag(config=True)

    forward_when_full = Enum(
        ["refuse", "drop_oldest"],
        default_value="refuse",
        help="""What happens when the forwarding spool is full: "refuse" (the default) refuses
        new events (503 to the frontend, counted `refused`); "drop_oldest" deletes the oldest
        spooled events to make room (counted `dropped`). Either is logged once while it lasts.""",
    ).tag(config=True)

    forward_retry_max = Float(
        60.0,
        min=0.1,
        help="""Longest wait in seconds between attempts to reach the collector (default 60):
        retries back off exponentially up to it (a `Retry-After` from the collector is
        honoured instead), and a collector that refuses the token (401/403) is retried at this
        pace.""",
    ).tag(config=True)

    forward_timeout = Float(
        30.0,
        min=0.1,
        help="""Longest time in seconds one request to the collector may take in total,
        connecting, sending and reading the reply (default 30): a collector that answers slower
        than that, even a byte at a time, is cut off and retried like one that is down.""",
    ).tag(config=True)

    accept_all_schemas = Bool(
        False,
        help="""True: POST api/telemetry/events takes events of every registered schema, not
        only those open to frontends (`frontend: true`), as a collector receiving the events
        that servers forward must (jupyter_server's own events among them). Anyone allowed to
        post may then post those schemas. False (the default): frontend schemas only.""",
    ).tag(config=True)

    audit = List(
        Enum(AUDIT_KINDS),
        help="""What the server audits: "execution" records one event per `execute_request`
        sent to a kernel through the kernel websocket (schema
        `https://events.jupyter.org/jupyter_telemetry_ext/execution`: the code as `user-code`,
        its SHA-256 and length, and the reply's status, error name, count and duration); also
        allow that schema in `c.EventLog.allowed_schemas` (with `user-code` to keep the code).
        "terminal" records terminals created and closed and one event per line entered in a
        terminal (schema `https://events.jupyter.org/jupyter_telemetry_ext/terminal`: the line
        as `user-code`, its SHA-256 and length, whether it was edited, pasted or hidden).
        Empty (the default): nothing.""",
    ).tag(config=True)

    audit_required = Bool(
        False,
        help="""True: fail closed. An `execute_request` reaches its kernel (with "execution"
        audited), and a line typed into a terminal reaches its shell (with "terminal"), only
        once its audit event is durable: written and synced to disk (fsync) by the EventLog's
        file handlers (a PostgreSQL handler: committed), and in the forwarding spool (fsynced)
        when forwarding; every other handler must have written it too. When it cannot be (a
        sink fails, the queue or the spool is full), it is refused: the kernel never runs the
        request, and the client gets an error reply `AuditUnavailable` saying why; the terminal
        line is erased unrun, and the terminal shows why. Needs `audit` not empty, each kind it
        names audited, its schema allowed or forwarded, and a file handler, a PostgreSQL
        handler or forwarding: otherwise the server does not start. False (the default): the
        audit records what runs and never stands in its way.""",
    ).tag(config=True)

    eventlog: EventLog
    metrics: TelemetryCollector | None = None
    forwarder: Forwarder | None = None
    forward_metrics: ForwardingMetrics | None = None

    @default("collector_url")
    def _default_collector_url(self) -> str:
        return os.environ.get(COLLECTOR_URL_ENV, "")

    @validate("collector_url")
    def _validate_collector_url(self, proposal: dict[str, str]) -> str:
        url = proposal["value"].strip()
        if url and not url.startswith(("http://", "https://")):
            msg = "TelemetryExtension.collector_url must start with http:// or https://"
            raise TraitError(msg)
        return url if not url or url.endswith("/") else url + "/"

    @default("static_paths")
    def _default_static_paths(self) -> list[str]:
        return [str(Path(__file__).parent.parent / "static")]

    @default("template_paths")
    def _default_template_paths(self) -> list[str]:
        return [str(Path(__file__).parent.parent / "templates")]

    def initialize(self) -> None:  # type: ignore[override]  # ExtensionApp's takes no argv
        """Create the EventLog (unless an extension loaded earlier had it created, see
        `server_eventlog`) and register the schemas found; then settings and handlers."""
        self.server_eventlog()
        atexit.register(self._flush_at_exit)
        super().initialize()  # type: ignore[no-untyped-call]

    def server_eventlog(self) -> EventLog:
        """Return the server's EventLog, created with the schemas found on the first call."""
        if "eventlog" in vars(self):
            return self.eventlog
        self.check_server_config()
        # Handlers always run on the EventLog's thread: a slow sink must not block the event loop.
        try:
            self.eventlog = EventLog(parent=self, background=True)
        except TraitError as e:
            self.refuse_to_start([f"the EventLog cannot be built from the config: {e}"])
        self._warn_missing_paths()
        found = register_discovered(self.eventlog, schema_folders(self.schema_paths), self.log)
        self.log.info("Telemetry: %d event schemas registered", len(found))
        return self.eventlog

    def _warn_missing_paths(self) -> None:
        for folder in self.schema_paths:
            if not Path(folder).exists():
                self.log.warning("TelemetryExtension.schema_paths: %s does not exist", folder)

    def initialize_settings(self) -> None:
        """Publish the EventLog, so that other extensions can register schemas and record events."""
        limits = Limits(self.max_body_size, self.max_batch_events, self.max_event_size)
        policy = Policy.from_options(self)
        # An erased user's late events (a client's retry) are dropped, as the collector's are.
        policy.tombstones = tuple(sources_of(self.eventlog.handlers))
        self.settings.update(
            {
                EVENTLOG_SETTING: self.eventlog,
                LIMITS_SETTING: limits,
                BUFFER_SETTING: self.subscriber_buffer,
                POLICY_SETTING: policy,
                SUBSCRIBERS_SETTING: Subscribers(
                    self.max_subscribers, self.max_subscribers_per_user
                ),
                ALL_SCHEMAS_SETTING: self.accept_all_schemas,
            }
        )
        if self.serverapp is not None:
            watch_made_up_users(self.serverapp.identity_provider)
        if self.server_events and self.serverapp is not None:
            recorded = record_server_events(self.serverapp.event_logger, self.eventlog, self.log)
            allowed = sum(self.eventlog.is_allowed(schema_id) for schema_id in recorded)
            self.log.info(
                "Telemetry: recording %d of the server's %d event schemas (those in "
                "c.EventLog.allowed_schemas)",
                allowed,
                len(recorded),
            )
            warn_unredacted_handlers(self.serverapp.event_logger, self.log)
        warn_user_not_kept(self.log, self.eventlog, self.record_user, self._posted)
        self.metrics = register(self.eventlog)
        if self.collector_url and self.eventlog.studies:
            msg = (
                "EventLog.studies: a server that forwards to a collector (collector_url) relays "
                "the consent routes to it: configure the studies in the collector's config"
            )
            self.refuse_to_start([msg])
        check_erasure(self.eventlog, None, self.refuse_to_start, self.log)
        consent_file = Path(self.consent_file or Path(self.data_dir) / CONSENT_FILE)
        start_consent(self.eventlog, consent_file, self.refuse_to_start, self.log, server_user())
        self._start_forwarding()
        # Again after the forwarding spool's own exit hook, so that this one runs first (last
        # in, first out): what it records at exit (the audit's stop) finds the spool still open.
        atexit.unregister(self._flush_at_exit)
        atexit.register(self._flush_at_exit)
        install_audit(self.audit, self.settings, self.serverapp, self.log)
        audits = audits_of(self.audit, self.settings)
        if self.audit_required and (failures := require_audit(audits, self.forwarder, self.log)):
            self.refuse_to_start(failures)
        if self.serverapp is not None:  # the event loop's first pass: every extension loaded
            self.serverapp.io_loop.add_callback(self._check_sinks)

    def _check_sinks(self) -> None:
        """Once every extension is loaded (one may add a handler or a listener): stop when the
        events the allow-list allows are written nowhere; warn of logs others can read."""
        if failures := written_nowhere(self.eventlog):
            self.refuse_to_start(failures)
        warn_open_logs(self.log, self.eventlog)

    def _posted(self, schema: EventSchema) -> bool:
        """Return whether events of `schema` get `record_user`'s user: posted, or recorded by
        an audit this server runs, for the user of each connection."""
        audited = {AUDIT_SCHEMAS[kind] for kind in self.audit if kind in AUDIT_SCHEMAS}
        return schema.frontend or self.accept_all_schemas or schema.id in audited

    def _start_forwarding(self) -> None:
        """Forward every accepted event to `collector_url`, when set; when the spool cannot be
        trusted, say so and refuse every event (503), rather than accept and lose it."""
        if not self.collector_url:
            return
        try:
            self.forwarder = Forwarder(self._forward_settings(), self.log)
        except SpoolFolderError as e:
            self.log.error("Telemetry: forwarding to %s cannot start: %s. Every event is "
                           "refused (503) until this is fixed and the server restarted "
                           "(see TelemetryExtension.forward_spool_dir)",
                           safe_url(self.collector_url), e)  # fmt: skip
            self.eventlog.add_tap(_refuse)
            return
        self.eventlog.add_tap(self.forwarder.tap)
        self.settings[FORWARDER_SETTING] = self.forwarder
        self.settings[CONSENT_MARKS_SETTING] = ConsentMarks(self.forwarder.settings, self.log)
        self.forward_metrics = ForwardingMetrics(self.forwarder).register()
        self.log.info("Telemetry: forwarding every accepted event to %s",
                      safe_url(self.collector_url))  # fmt: skip

    def _forward_settings(self) -> ForwardSettings:
        token = os.environ.get(self.collector_token_env, "") if self.collector_token_env else ""
        if not token:
            self.log.warning("Telemetry: no collector token in $%s", self.collector_token_env)
        folder = Path(self.forward_spool_dir or Path(self.data_dir) / SPOOL_FOLDER)
        return ForwardSettings(
            collector_url=self.collector_url,
            token=token,
            folder=folder,
            max_bytes=self.forward_spool_bytes,
            when_full=self.forward_when_full,
            fsync=self.reply_after_write or self.audit_required,
            batch_events=self.max_batch_events,
            batch_bytes=self.max_body_size,
            retry_max=self.forward_retry_max,
            timeout=self.forward_timeout,
        )

    def initialize_handlers(self) -> None:
        """Add the REST routes and the websocket (relative: the server adds its base_url)."""
        self.handlers.extend(default_handlers)
        self.handlers.extend(page_handlers)
        self.handlers.extend(dashboard_handlers + dashboard_page_handlers)
        self.handlers.extend(consent_handlers)
        if self.server_events:  # clients posting to api/events must not forge server events
            self.handlers.extend(server_events_handlers)

    async def stop_extension(self) -> None:
        """Write every accepted event before the server exits, off the event loop."""
        atexit.unregister(self._flush_at_exit)
        stop_audit(self.settings)  # requests still waiting are recorded before the flush
        if self.metrics is not None:
            unregister(self.metrics)
            self.metrics = None
        if self.forward_metrics is not None:
            self.forward_metrics.unregister()
            self.forward_metrics = None
        if self.forwarder is not None:  # first: the events are in the spool before the exit
            await asyncio.to_thread(self.forwarder.close, self.shutdown_timeout)
        written = await asyncio.to_thread(self.eventlog.flush, self.shutdown_timeout)
        if written:
            self.eventlog.close(self.shutdown_timeout)  # nothing is queued: this returns at once
        else:
            pending = self.eventlog.pending
            self.log.error("Telemetry: %d events were not written on shutdown", pending)

    def _flush_at_exit(self) -> None:
        """Flush when the process exits without stop_extension (e.g. SIGINT without a terminal)."""
        stop_audit(self.settings)  # a clean exit all the same: the audit stream says it stopped
        if self.forwarder is not None:
            self.forwarder.close(self.shutdown_timeout)
        self.eventlog.close(self.shutdown_timeout)


def _refuse(*_: object) -> None:
    """Refuse an event: forwarding did not start, and events go only through forwarding."""
    raise ForwardingRefusedError(ForwardingRefusedError.reply)
