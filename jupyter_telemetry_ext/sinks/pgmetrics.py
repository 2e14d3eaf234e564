"""Prometheus metrics of the PostgreSQL handlers: stored, duplicate, refused, outages, pending."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import REGISTRY, CounterMetricFamily, GaugeMetricFamily, Metric

if TYPE_CHECKING:
    from .postgres import _Metrics


class PostgresCollector:
    """Exposes the live PostgresEventHandlers' counts, per table, at scrape time."""

    def __init__(self, metrics: _Metrics) -> None:
        """Read the handlers that `metrics` keeps."""
        self.metrics = metrics

    def describe(self) -> list[Metric]:
        """Return nothing: the tables are known only at scrape time."""
        return []

    def collect(self) -> Iterator[Metric]:
        """Yield the event counts per table and outcome, outages and pending events."""
        events = CounterMetricFamily(
            "jupyter_telemetry_postgres_events",
            "Events the PostgreSQL handlers took: stored, duplicate (an id already stored), "
            "refused (a row PostgreSQL will never take).",
            labels=["table", "outcome"],
        )
        outages = CounterMetricFamily(
            "jupyter_telemetry_postgres_outages", "Times PostgreSQL became unavailable.",
            labels=["table"],
        )  # fmt: skip
        pending = GaugeMetricFamily(
            "jupyter_telemetry_postgres_pending",
            "Events waiting to be committed (in memory and in the spool).",
            labels=["table"],
        )
        counts: Counter[tuple[str, str]] = Counter()
        waiting: Counter[str] = Counter()
        for handler in list(self.metrics.handlers):
            for outcome, n in handler.counts.items():
                counts[(handler.table, outcome)] += n
            waiting[handler.table] += handler.pending
        for (table, outcome), n in sorted(counts.items()):
            if outcome == "outages":
                outages.add_metric([table], n)
            else:
                events.add_metric([table, outcome], n)
        for table, n in sorted(waiting.items()):
            pending.add_metric([table], n)
        yield from (events, outages, pending)


def register(metrics: _Metrics) -> None:
    """Add the collector to the default registry (the server's `/metrics`)."""
    REGISTRY.register(PostgresCollector(metrics))
