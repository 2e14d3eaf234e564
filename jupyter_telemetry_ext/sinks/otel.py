"""OpenTelemetry export: a `logging` handler that sends each event as an OTLP log record.

Needs the `otel` extra: `pip install "jupyter_telemetry_ext[otel]"`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource

from jupyter_telemetry_ext.core.errors import TimestampError
from jupyter_telemetry_ext.core.timestamps import parse_timestamp

SCOPE = "jupyter_telemetry_ext"


class OTLPEventHandler(logging.Handler):
    """Sends each event as an OTLP log record: a structured body, the schema as attributes.

    With no `logger_provider`, one is made that batches records to an OTLP/HTTP `endpoint`
    (default: the `OTEL_EXPORTER_OTLP_LOGS_ENDPOINT` / `OTEL_EXPORTER_OTLP_ENDPOINT` environment
    variables, else http://localhost:4318/v1/logs), each export given up after `timeout` seconds.
    `flush()` waits (at most `flush_timeout_ms`) until what was recorded is sent.
    """

    def __init__(
        self,
        endpoint: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        service_name: str = "jupyter-server",
        logger_provider: LoggerProvider | None = None,
        timeout: float = 10.0,
        flush_timeout_ms: int = 10_000,
        level: int = logging.NOTSET,
    ) -> None:
        """Export to `endpoint` (or through `logger_provider` when given)."""
        super().__init__(level)
        self.provider = logger_provider or _provider(endpoint, headers, service_name, timeout)
        self._logger = self.provider.get_logger(SCOPE)
        self.flush_timeout_ms = flush_timeout_ms

    def emit(self, record: logging.LogRecord) -> None:
        """Send one event capsule as a log record."""
        try:
            capsule = record.msg if isinstance(record.msg, Mapping) else {}
            self._logger.emit(**_log_fields(capsule, record))
        except Exception:  # the logging.Handler contract: report, never raise
            self.handleError(record)

    def flush(self) -> None:
        """Send every batched record now, waiting at most `flush_timeout_ms`."""
        self.provider.force_flush(self.flush_timeout_ms)

    def close(self) -> None:
        """Flush; the handler stays usable, as a FileHandler does.

        `logging.config.dictConfig` (run by every traitlets application when it sets up its
        logging) closes every handler in the process, including those made in config files:
        shutting the provider down here would silence the handler for good. The provider
        shuts itself down when the process exits.
        """
        self.flush()
        super().close()


def _provider(
    endpoint: str | None, headers: Mapping[str, str] | None, service: str, timeout: float
) -> LoggerProvider:
    provider = LoggerProvider(resource=Resource.create({"service.name": service}))
    exporter = OTLPLogExporter(
        endpoint=endpoint, headers=dict(headers) if headers else None, timeout=timeout
    )
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
    return provider


def _log_fields(capsule: Mapping[str, Any], record: logging.LogRecord) -> dict[str, Any]:
    schema = str(capsule.get("__schema__", ""))
    return {
        "timestamp": _nanoseconds(capsule.get("__timestamp__"), record.created),
        "observed_timestamp": int(record.created * 1e9),
        "severity_number": SeverityNumber.INFO,
        "severity_text": "INFO",
        "event_name": schema,
        "body": {k: v for k, v in capsule.items() if not k.startswith("__")},
        "attributes": {
            "jupyter.event.schema": schema,
            "jupyter.event.schema_version": str(capsule.get("__schema_version__", "")),
            "jupyter.event.metadata_version": int(capsule.get("__metadata_version__", 0)),
        },
    }


def _nanoseconds(stamp: object, fallback: float) -> int:
    try:
        return int(parse_timestamp(str(stamp)).timestamp() * 1_000_000) * 1000
    except TimestampError:
        return int(fallback * 1e9)
