"""Prometheus metrics: events per schema and outcome, read from the EventLog at scrape time.

Counting costs the recording path one dict increment; Prometheus reads the counts only when
`/metrics` is scraped.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client.core import REGISTRY, CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry

from jupyter_telemetry_ext.core.eventlog import EventLog
from jupyter_telemetry_ext.core.outcomes import OUTCOMES


class TelemetryCollector:
    """Exposes an EventLog's counts as `jupyter_telemetry_events_total{schema, outcome}`."""

    def __init__(self, eventlog: EventLog) -> None:
        """Read counts from `eventlog`."""
        self.eventlog = eventlog

    def describe(self) -> list[Metric]:
        """Return nothing: the schemas are known only at scrape time."""
        return []

    def collect(self) -> Iterator[Metric]:
        """Yield the event counters and the writer's queue length."""
        events = CounterMetricFamily(
            "jupyter_telemetry_events",
            "Telemetry events per schema and outcome: " + ", ".join(OUTCOMES) + ".",
            labels=["schema", "outcome"],
        )
        for (schema, outcome), count in sorted(self.eventlog.outcomes().items()):
            events.add_metric([schema, outcome], count)
        yield events
        yield self._sink_failures()
        yield GaugeMetricFamily(
            "jupyter_telemetry_queue_pending",
            "Recorded events waiting for the handlers.",
            value=self.eventlog.pending,
        )

    def _sink_failures(self) -> Metric:
        lost = CounterMetricFamily(
            "jupyter_telemetry_sink_failures",
            "Events a handler did not write, per handler (its name, else its class and place "
            "in EventLog.handlers) and schema.",
            labels=["handler", "schema"],
        )
        labels = handler_labels(self.eventlog.handlers)
        for (handler, schema), count in self.eventlog.sink_failures().items():
            lost.add_metric([labels.get(handler) or type(handler).__name__, schema], count)
        return lost


def handler_labels(handlers: list[logging.Handler]) -> dict[logging.Handler, str]:
    """Name each handler: its `name` if set, else its class and its place in the list."""
    return {h: h.get_name() or f"{type(h).__name__}-{i}" for i, h in enumerate(handlers)}


def register(eventlog: EventLog, registry: CollectorRegistry = REGISTRY) -> TelemetryCollector:
    """Add an EventLog's metrics to a Prometheus registry (the server's `/metrics` by default)."""
    collector = TelemetryCollector(eventlog)
    registry.register(collector)
    return collector


def unregister(collector: TelemetryCollector, registry: CollectorRegistry = REGISTRY) -> None:
    """Remove the metrics again (when the server stops)."""
    registry.unregister(collector)
