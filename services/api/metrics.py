"""The API's Prometheus metrics (``GET /metrics``): requests by route and status, their latency, and the records
checked and found unprocessed. Each app has its own registry, so several apps in one process (tests) never collide.

With ``--workers N`` each worker process keeps its own counters and a scrape reaches one of them: run one worker per
container where the numbers matter, or sum over the ``pid`` the process collector reports.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.process_collector import ProcessCollector

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, MutableMapping

    from streamwreck.core.answers import ReconcileResponse

    Scope = MutableMapping[str, Any]
    Message = MutableMapping[str, Any]
    Receive = Callable[[], Awaitable[Message]]
    Send = Callable[[Message], Awaitable[None]]
    Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.requests = Counter(
            "streamwreck_api_requests",
            "HTTP requests answered, by method, route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "streamwreck_api_request_duration_seconds",
            "Time from a request's arrival to the end of its answer, by method and route template.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.checked = Counter(
            "streamwreck_api_records_checked",
            "Records asked about in answered reconcile requests.",
            registry=self.registry,
        )
        self.unprocessed = Counter(
            "streamwreck_api_records_unprocessed",
            "Records answered as unprocessed (no ledger entry).",
            registry=self.registry,
        )
        self.duplicates = Counter(
            "streamwreck_api_records_duplicate", "Records answered as processed more than once.", registry=self.registry
        )
        self.unreadable = Counter(
            "streamwreck_api_records_unreadable",
            "Records whose ledger data could not be read.",
            registry=self.registry,
        )

    def answered(self, answer: ReconcileResponse) -> None:
        self.checked.inc(answer["checked"])
        self.unprocessed.inc(len(answer["unprocessed"]))
        self.duplicates.inc(len(answer["duplicates"]))
        self.unreadable.inc(len(answer.get("unreadable", [])))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Pure ASGI: counts and times every HTTP request by its route template (``other`` for unknown paths, so that
    a scan of random paths adds no series)."""

    def __init__(self, app: Asgi, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "other"
            method = scope.get("method", "")
            method = method if method in {"GET", "POST", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS"} else "other"
            self.metrics.requests.labels(method, template, str(status)).inc()
            self.metrics.latency.labels(method, template).observe(time.perf_counter() - started)
