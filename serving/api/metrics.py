"""Request metrics of the API, on a Prometheus registry of its own (served at /metrics)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class ApiMetrics:
    """Requests by route template (not raw path: ids would explode the label space)."""

    def __init__(self, *, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.requests = Counter(
            "resonate_api_requests_total",
            "API requests by method, route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.seconds = Histogram(
            "resonate_api_request_seconds",
            "API request latency by method and route template.",
            ["method", "route"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.events = Counter(
            "resonate_api_feed_events_total",
            "Records the API consumed, by topic role and outcome (ok, invalid).",
            ["topic", "outcome"],
            registry=self.registry,
        )
        self.published = Counter(
            "resonate_api_published_total",
            "Interactions the API published (seeds).",
            registry=self.registry,
        )

    def install(self, app: FastAPI) -> None:
        """Count and time every request; serve /metrics."""

        @app.middleware("http")
        async def measure(
            request: Request, call_next: Callable[[Request], Awaitable[Response]]
        ) -> Response:
            t0 = time.perf_counter()
            status = 500
            try:
                response = await call_next(request)
                status = response.status_code
                return response
            finally:
                route = request.scope.get("route")
                name = getattr(route, "path", "unmatched")
                self.requests.labels(request.method, name, str(status)).inc()
                self.seconds.labels(request.method, name).observe(time.perf_counter() - t0)

        @app.get("/metrics", include_in_schema=False)
        def metrics() -> Response:
            return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)
