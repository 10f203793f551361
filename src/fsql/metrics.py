"""``fsql serve``'s Prometheus metrics (``GET /metrics``, text exposition format).

    fsql_http_requests_total{endpoint, service, code}       every answered request
    fsql_http_request_duration_seconds{endpoint, service}   latency histogram
    fsql_online_store_errors_total                          requests the store failed (503)
    fsql_feature_values_total{service, status}              values served, by status (PRESENT,
                                                            MISSING, EXPIRED, CORRUPT)
    fsql_view_last_sync_timestamp_seconds{view}             from each online view's sync meta,
    fsql_view_last_sync_entities{view}                      read from the store at scrape time
    fsql_view_online_entities{view}

``endpoint`` is the route (``other`` for unknown paths, so clients cannot grow the label set);
``service`` the training set a request named (``adhoc`` for a feature list, ``unknown`` for a
name that is not a training set, empty for endpoints other than features).

With several workers (``fsql serve --workers N``) every worker writes its samples to files in
``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's multiprocess mode, chosen when the library
is imported: the variable must be set before) and a scrape of any worker sums them all.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from fsql.serve import CORRUPT, EXPIRED, MISSING, PRESENT
from fsql.workers import MULTIPROC_ENV

CONTENT_TYPE = CONTENT_TYPE_LATEST
# online reads take ~0.3-5 ms: finer buckets there than prometheus_client's defaults
BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

SyncState = Mapping[str, Mapping[str, str]]  # view -> its sync meta fields


class ServeMetrics:
    """The metrics of one app. Single-process: a registry of its own (a fresh app starts at
    zero). Multiprocess: samples go to the shared directory and a scrape merges the workers'.
    ``sync_state`` reads the views' sync meta when scraped (None: the store did not answer)."""

    def __init__(self, sync_state: Callable[[], SyncState | None]) -> None:
        self.multiprocess = MULTIPROC_ENV in os.environ
        # the mode prometheus_client chose at its import: the two must agree, or the workers'
        # samples would silently go missing from every scrape
        assert self.multiprocess == values.ValueClass._multiprocess, (
            f"{MULTIPROC_ENV} must be set before prometheus_client is imported")
        self.registry = CollectorRegistry()
        if self.multiprocess:
            MultiProcessCollector(self.registry)  # type: ignore[no-untyped-call]
        own = None if self.multiprocess else self.registry
        self.requests = Counter("fsql_http_requests", "HTTP requests answered",
                                ("endpoint", "service", "code"), registry=own)
        self.latency = Histogram("fsql_http_request_duration_seconds",
                                 "Time to answer an HTTP request", ("endpoint", "service"),
                                 buckets=BUCKETS, registry=own)
        self.store_errors = Counter("fsql_online_store_errors",
                                    "Requests the online store failed (answered 503)",
                                    registry=own)
        self.values = Counter("fsql_feature_values",
                              "Feature values served, by status (CORRUPT: stored values that "
                              "failed to decode, served as null)", ("service", "status"),
                              registry=own)
        self.registry.register(_SyncCollector(sync_state))
        # (endpoint, service, code) -> its counter and histogram (bounded: the labels are)
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._values: dict[tuple[str, str], Counter] = {}  # (service, status) -> its counter

    def record(self, endpoint: str, service: str, code: int,
               seconds: float | None = None) -> None:
        """Count one answered request; ``seconds`` None when it never reached a handler."""
        key = (endpoint, service, code)
        children = self._children.get(key)
        if children is None:  # labels() costs more than inc() and observe() together
            children = self._children[key] = (self.requests.labels(endpoint, service, str(code)),
                                              self.latency.labels(endpoint, service))
        children[0].inc()
        if seconds is not None:
            children[1].observe(seconds)

    def record_values(self, service: str, statuses: Mapping[str, list[str]],
                      corrupt: int) -> None:
        """Count the values of one answer by status (``corrupt``: how many are CORRUPT)."""
        total = missing = expired = 0
        for column in statuses.values():
            total += len(column)
            missing += column.count(MISSING)
            expired += column.count(EXPIRED)
        for status, count in ((PRESENT, total - missing - expired - corrupt),
                              (MISSING, missing), (EXPIRED, expired), (CORRUPT, corrupt)):
            if count:
                child = self._values.get((service, status))
                if child is None:
                    child = self._values[service, status] = self.values.labels(service, status)
                child.inc(count)

    def exposition(self) -> bytes:
        """The text exposition of every metric (summed over the workers) and the sync gauges
        (reads the store: call it off the event loop)."""
        return generate_latest(self.registry)


class _SyncCollector:
    """The sync gauges, read from the store when scraped (so every worker reports the same)."""

    def __init__(self, read: Callable[[], SyncState | None]) -> None:
        self.read = read

    def collect(self) -> Iterable[Metric]:
        state = self.read()
        if state is None:
            return []
        gauges = {
            "synced_at": GaugeMetricFamily("fsql_view_last_sync_timestamp_seconds",
                                           "When the view was last synced (Unix time)",
                                           labels=["view"]),
            "last_entities": GaugeMetricFamily("fsql_view_last_sync_entities",
                                               "Entities written by the view's last sync",
                                               labels=["view"]),
            "online_entities": GaugeMetricFamily("fsql_view_online_entities",
                                                 "Entities the view has online",
                                                 labels=["view"]),
        }
        for view, meta in sorted(state.items()):
            for field, gauge in gauges.items():
                text = meta.get(field, "")
                if text.lstrip("-").isdigit():
                    scale = 1e-6 if field == "synced_at" else 1  # synced_at is in microseconds
                    gauge.add_metric([view], int(text) * scale)
        return list(gauges.values())

