"""TelemetryExtension: the Jupyter server extension that records events posted by frontends."""

from __future__ import annotations

import asyncio
import atexit
from pathlib import Path

from jupyter_server.extension.application import ExtensionApp, ExtensionAppJinjaMixin
from traitlets import Bool, Float, Int, List, Unicode, default

from ._version import __version__
from .discovery import register_discovered, schema_folders
from .eventlog import EventLog
from .handlers import BUFFER_SETTING, EVENTLOG_SETTING, LIMITS_SETTING, default_handlers
from .ingest import Limits
from .metrics import TelemetryCollector, register, unregister
from .page import page_handlers
from .server_events import forward_server_events


class TelemetryExtension(ExtensionAppJinjaMixin, ExtensionApp):
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
        `personal-data` schemas: their properties are redacted unless allowed).
        False: leave them to jupyter_server's own event logger only.""",
    ).tag(config=True)

    eventlog: EventLog
    metrics: TelemetryCollector | None = None

    @default("static_paths")
    def _default_static_paths(self) -> list[str]:
        return [str(Path(__file__).parent / "static")]

    @default("template_paths")
    def _default_template_paths(self) -> list[str]:
        return [str(Path(__file__).parent / "templates")]

    def initialize(self) -> None:  # type: ignore[override]  # ExtensionApp's takes no argv
        """Create the EventLog and register the schemas found; then settings and handlers."""
        # Handlers always run on the EventLog's thread: a slow sink must not block the event loop.
        self.eventlog = EventLog(parent=self, background=True)
        self._warn_missing_paths()
        found = register_discovered(self.eventlog, schema_folders(self.schema_paths), self.log)
        self.log.info("Telemetry: %d event schemas registered", len(found))
        atexit.register(self._flush_at_exit)
        super().initialize()  # type: ignore[no-untyped-call]

    def _warn_missing_paths(self) -> None:
        for folder in self.schema_paths:
            if not Path(folder).exists():
                self.log.warning("TelemetryExtension.schema_paths: %s does not exist", folder)

    def initialize_settings(self) -> None:
        """Publish the EventLog, so that other extensions can register schemas and record events."""
        limits = Limits(self.max_body_size, self.max_batch_events, self.max_event_size)
        self.settings.update(
            {
                EVENTLOG_SETTING: self.eventlog,
                LIMITS_SETTING: limits,
                BUFFER_SETTING: self.subscriber_buffer,
            }
        )
        if self.server_events and self.serverapp is not None:
            forwarded = forward_server_events(self.serverapp.event_logger, self.eventlog, self.log)
            self.log.info("Telemetry: recording %d server event schemas", len(forwarded))
        self.metrics = register(self.eventlog)

    def initialize_handlers(self) -> None:
        """Add the REST routes and the websocket (relative: the server adds its base_url)."""
        self.handlers.extend(default_handlers)
        self.handlers.extend(page_handlers)

    async def stop_extension(self) -> None:
        """Write every accepted event before the server exits, off the event loop."""
        atexit.unregister(self._flush_at_exit)
        if self.metrics is not None:
            unregister(self.metrics)
            self.metrics = None
        written = await asyncio.to_thread(self.eventlog.flush, self.shutdown_timeout)
        if written:
            self.eventlog.close(self.shutdown_timeout)  # nothing is queued: this returns at once
        else:
            pending = self.eventlog.pending
            self.log.error("Telemetry: %d events were not written on shutdown", pending)

    def _flush_at_exit(self) -> None:
        """Flush when the process exits without stop_extension (e.g. SIGINT without a terminal)."""
        self.eventlog.close(self.shutdown_timeout)
