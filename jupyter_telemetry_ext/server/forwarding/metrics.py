"""Prometheus metrics of forwarding: events queued, sent, retried, rejected, dropped, refused;
the sender's errors per kind, its restarts and its reconnections."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import REGISTRY, CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry

from .forwarder import FORWARD_OUTCOMES, Forwarder


class ForwardingMetrics:
    """Exposes a Forwarder's counts as `jupyter_telemetry_forward_events_total{outcome}`."""

    def __init__(self, forwarder: Forwarder, registry: CollectorRegistry = REGISTRY) -> None:
        """Read counts from `forwarder`; `register()` adds them to `registry`."""
        self.forwarder, self.registry = forwarder, registry

    def register(self) -> ForwardingMetrics:
        """Add the metrics to the registry (the server's `/metrics` by default); return self."""
        self.registry.register(self)
        return self

    def unregister(self) -> None:
        """Remove the metrics again (when the server stops)."""
        self.registry.unregister(self)

    def describe(self) -> list[Metric]:
        """Return nothing: collected at scrape time."""
        return []

    def collect(self) -> Iterator[Metric]:
        """Yield the event counters, the spool's size and the events waiting for the spool."""
        events = CounterMetricFamily(
            "jupyter_telemetry_forward_events",
            "Events forwarded to the collector, per outcome: " + ", ".join(FORWARD_OUTCOMES) + ".",
            labels=["outcome"],
        )
        counts = self.forwarder.counts
        for outcome in FORWARD_OUTCOMES:
            events.add_metric([outcome], counts[outcome])
        yield events
        yield from self._sender_metrics()
        spool = self.forwarder.spool
        yield GaugeMetricFamily(
            "jupyter_telemetry_forward_spool_bytes",
            "Bytes of events in the forwarding spool that the collector has not acknowledged.",
            value=spool.size,
        )
        yield GaugeMetricFamily(
            "jupyter_telemetry_forward_spool_events",
            "Events in the forwarding spool that the collector has not acknowledged.",
            value=spool.pending,
        )
        yield GaugeMetricFamily(
            "jupyter_telemetry_forward_queue_pending",
            "Accepted events waiting to be written to the forwarding spool.",
            value=self.forwarder.queued,
        )

    def _sender_metrics(self) -> Iterator[Metric]:
        """Yield the sender's errors per kind (exception class), restarts and reconnections."""
        forwarder = self.forwarder
        forwarder.check_sender()  # a scrape also revives a sender that ended
        errors = CounterMetricFamily(
            "jupyter_telemetry_forward_errors",
            "Exceptions while sending to the collector or reading its reply, per kind (the "
            "exception's class, e.g. ConnectionRefusedError, ReplyDeadlineError); each retried.",
            labels=["kind"],
        )
        for kind, count in sorted(forwarder.errors.items()):
            errors.add_metric([kind], count)
        yield errors
        yield CounterMetricFamily(
            "jupyter_telemetry_forward_sender_restarts",
            "Times the forwarder's sender ended on an exception and was started again.",
            value=forwarder.sender_restarts,
        )
        yield CounterMetricFamily(
            "jupyter_telemetry_forward_reconnects",
            "Requests sent again on a new connection because the collector (or a proxy) had "
            "closed the kept-alive one: not counted as failures.",
            value=forwarder.uplink.reconnects,
        )
