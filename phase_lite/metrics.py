"""Prometheus metrics, served at ``GET /metrics`` in the text exposition format.

Exposition and parsing are prometheus-client's. Every label value comes from the code, never
from a request or the data: a request's route is the URL rule it matched
(``/v1/apps/<app_id>/``) or ``unmatched``, its method one of the HTTP methods phase_lite
answers or ``OTHER``; caches are named for what they hold; object counts are per kind. The
counts, the audit buffer depth and the cache figures are read when scraped, so requests pay
only for their own count and latency (``RequestFigures``).
"""

import hmac
from datetime import datetime
import logging
import threading
import time
from bisect import bisect_left

from prometheus_client import CollectorRegistry, Histogram, ProcessCollector
from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                    HistogramMetricFamily)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.utils import floatToGoString

from .api import SECURITY_HEADERS, error_response
from .store import StoreError
from .store import meta as meta_store
from .store import mirrors as mirror_store

log = logging.getLogger("phase_lite.metrics")

PATH = "/metrics"
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
NEEDS_TOKEN = "Authentication credentials were not provided."
WRONG_TOKEN = "Invalid metrics token."


class Metrics:
    """The registry of one app: request and transaction instruments plus a state collector."""

    def __init__(self, services):
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = RequestFigures()
        self.registry.register(self.requests)
        self.pending = None  # what to flush before a scrape (the access log's recorder)
        self.transactions = Histogram(
            "phase_lite_write_transaction_duration_seconds",
            "Time of each committed write transaction, BEGIN IMMEDIATE to COMMIT.",
            buckets=LATENCY_BUCKETS, registry=self.registry)
        self.registry.register(StateCollector(services))
        ProcessCollector(registry=self.registry)
        services.db.observe_transaction = self.transactions.observe

    def exposition(self) -> bytes:
        if self.pending is not None:
            self.pending()
        return generate_latest(self.registry)


class RequestFigures:
    """The requests answered (a counter by route, method and status) and their latency (a
    histogram by route and method), kept as plain numbers and exposed when scraped.

    The access log's recorder hands them over in batches (``observe_all``), off the request's
    path: a request pays nothing here, where prometheus-client's labelled Counter and
    Histogram took three locks and a walk of the bucket list per request.
    """

    def __init__(self, buckets=LATENCY_BUCKETS):
        self.bounds = tuple(float(bound) for bound in buckets)
        self._lock = threading.Lock()
        self._counts = {}  # (route, method, status) -> count
        # (route, method) -> [sum, count per bucket..., count over the last bound]
        self._latency = {}
        self._created = {}  # either key -> when first seen

    def observe_all(self, figures):
        """Count ``(route, method, status, seconds)`` of each request answered."""
        bounds, counts, latency = self.bounds, self._counts, self._latency
        with self._lock:
            for route, method, status, seconds in figures:
                key = (route, method, status)
                count = counts.get(key)
                if count is None:
                    self._created[key] = time.time()
                    count = 0
                counts[key] = count + 1
                cells = latency.get(key[:2])
                if cells is None:
                    self._created[key[:2]] = time.time()
                    cells = latency[key[:2]] = [0.0] * (len(bounds) + 2)
                cells[0] += seconds
                cells[bisect_left(bounds, seconds) + 1] += 1  # the first bound >= seconds

    def collect(self):
        with self._lock:
            counts = list(self._counts.items())
            latencies = [(key, list(cells)) for key, cells in self._latency.items()]
        requests = CounterMetricFamily(
            "phase_lite_http_requests", "HTTP requests answered, by route, method and status.",
            labels=["route", "method", "status"])
        for (route, method, status), count in counts:
            requests.add_metric([route, method, str(status)], count,
                                created=self._created[(route, method, status)])
        yield requests
        durations = HistogramMetricFamily(
            "phase_lite_http_request_duration_seconds",
            "Time from receiving a request to returning its answer, by route and method.",
            labels=["route", "method"])
        names = [floatToGoString(bound) for bound in self.bounds] + ["+Inf"]
        for labels, (total, *per_bucket) in latencies:
            cumulative, buckets = 0, []
            for name, count in zip(names, per_bucket):
                cumulative += count
                buckets.append((name, cumulative))
            durations.add_metric(list(labels), buckets, total)
        yield durations


class StateCollector:
    """Figures read at scrape time: object counts, audit buffer depth, cache hits and misses."""

    def __init__(self, services):
        self.services = services

    def collect(self):
        db = self.services.db
        try:
            counts = meta_store.count_objects(db)
        except StoreError as exc:
            log.error("metrics: counting objects failed: %s", exc)
        else:
            for kind in ("apps", "environments", "secrets"):
                yield GaugeMetricFamily(f"phase_lite_{kind}", f"{kind.capitalize()} stored"
                                        + (" (not deleted)." if kind == "secrets" else "."),
                                        value=counts[kind])
            tokens = GaugeMetricFamily("phase_lite_tokens", "Tokens not revoked, by kind.",
                                       labels=["kind"])
            tokens.add_metric(["user"], counts["user_tokens"])
            tokens.add_metric(["service"], counts["service_tokens"])
            yield tokens
        yield from self.mirror_figures(db)
        yield GaugeMetricFamily("phase_lite_audit_read_buffer_events",
                                "Read audit events waiting to be written.",
                                value=len(self.services.read_log))
        hits = CounterMetricFamily("phase_lite_cache_hits", "Cache lookups answered, by cache.",
                                   labels=["cache"])
        misses = CounterMetricFamily("phase_lite_cache_misses",
                                     "Cache lookups not answered, by cache.", labels=["cache"])
        for name, (hit, missed) in sorted(self.services.cache_statistics().items()):
            hits.add_metric([name], hit)
            misses.add_metric([name], missed)
        yield hits
        yield misses


    @staticmethod
    def mirror_figures(db):
        """Mirror sources, those whose last sync failed, and the oldest last success."""
        try:
            sources, failing, oldest = mirror_store.state(db)
        except StoreError as exc:
            log.error("metrics: reading mirror sources failed: %s", exc)
            return
        yield GaugeMetricFamily("phase_lite_mirror_sources", "Mirror sources (phase-lite "
                                "mirror).", value=sources)
        yield GaugeMetricFamily("phase_lite_mirror_sources_failing",
                                "Mirror sources whose last sync failed.", value=failing)
        if oldest is not None:
            yield GaugeMetricFamily(
                "phase_lite_mirror_oldest_success_timestamp_seconds",
                "Unix time of the least recent last successful sync of any mirror source.",
                value=datetime.fromisoformat(oldest.replace("Z", "+00:00")).timestamp())


class MetricsEndpoint:
    """WSGI middleware answering ``GET /metrics``; with a token, only to ``Bearer <token>``."""

    def __init__(self, wsgi_app, metrics: Metrics, token: str | None = None):
        self.wsgi_app = wsgi_app
        self.metrics = metrics
        self.token = token.encode() if token else None

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") != PATH:
            return self.wsgi_app(environ, start_response)
        method = environ.get("REQUEST_METHOD")
        if method not in ("GET", "HEAD"):
            answer = error_response(f'Method "{method}" not allowed.', 405,
                                    {"Allow": "GET, HEAD", **dict(SECURITY_HEADERS)})
            return answer(environ, start_response)
        if self.token is not None:
            refusal = self.refusal(environ.get("HTTP_AUTHORIZATION", ""))
            if refusal is not None:
                answer = error_response(refusal, 401,
                                        {"WWW-Authenticate": "Bearer", **dict(SECURITY_HEADERS)})
                return answer(environ, start_response)
        body = self.metrics.exposition()
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST),
                                  ("Content-Length", str(len(body))), *SECURITY_HEADERS])
        return [b""] if method == "HEAD" else [body]

    def refusal(self, authorization: str) -> str | None:
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            return NEEDS_TOKEN
        if not hmac.compare_digest(given.strip().encode(), self.token):
            return WRONG_TOKEN
        return None
