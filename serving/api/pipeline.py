"""The inspector's pipeline panel: latency and throughput scraped from the workers'
Prometheus endpoints (summed over workers; rates between two scrapes)."""

from __future__ import annotations

import logging
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger(__name__)

_HISTOGRAMS = {
    "event_to_recommendation": "resonate_event_to_recommendation_seconds",
    "upload_to_searchable": "resonate_upload_to_searchable_seconds",
}


class Latency(BaseModel):
    """One latency histogram, over every worker since it started."""

    model_config = ConfigDict(frozen=True)
    count: int = Field(description="Observations.")
    p50_s: float | None = Field(description="Median (bucket-interpolated), seconds.")
    p95_s: float | None = Field(description="95th percentile (bucket-interpolated), seconds.")


class PipelineStats(BaseModel):
    """What the panel shows."""

    model_config = ConfigDict(frozen=True)
    workers: int = Field(description="Worker endpoints configured.")
    reachable: int = Field(description="Worker endpoints that answered.")
    latency: dict[str, Latency] = Field(description="event_to_recommendation, upload_to_...")
    events: dict[str, float] = Field(description="Events consumed (ok) by topic, in total.")
    recommendations: float = Field(description="Lists emitted in total.")
    events_per_s: float | None = Field(description="ok events/s since the previous scrape.")
    lists_per_s: float | None = Field(description="Lists/s since the previous scrape.")


@dataclass
class _Sample:
    events: dict[str, float] = field(default_factory=dict)
    recommendations: float = 0.0
    buckets: dict[str, dict[float, float]] = field(default_factory=dict)


def quantile(buckets: dict[float, float], q: float) -> float | None:
    """Prometheus-style quantile from cumulative buckets {upper bound: count}."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    prev_bound, prev_count = 0.0, 0.0
    for b in bounds:
        c = buckets[b]
        if c >= rank:
            if b == float("inf"):
                return prev_bound
            span = c - prev_count
            return prev_bound + (b - prev_bound) * ((rank - prev_count) / span if span else 1.0)
        prev_bound, prev_count = b, c
    return prev_bound


def parse(text: str, into: _Sample) -> None:
    """Add one worker's exposition to ``into``."""
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == "resonate_events_total" and s.labels.get("outcome") == "ok":
                topic = s.labels.get("topic", "")
                into.events[topic] = into.events.get(topic, 0.0) + s.value
            elif s.name == "resonate_recommendations_total":
                into.recommendations += s.value
            for key, name in _HISTOGRAMS.items():
                if s.name == f"{name}_bucket":
                    le = float(s.labels["le"])
                    b = into.buckets.setdefault(key, {})
                    b[le] = b.get(le, 0.0) + s.value


def _fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=1.0) as resp:  # noqa: S310 (configured URLs)
        return str(resp.read().decode())


class PipelinePanel:
    """Scrape on demand; remembers the previous scrape for rates."""

    def __init__(self, *, urls: Sequence[str], fetch: Callable[[str], str] = _fetch) -> None:
        self.urls = list(urls)
        self.fetch = fetch
        self._prev: tuple[float, _Sample] | None = None

    def scrape(self) -> PipelineStats:
        """Blocking (HTTP to each worker): call from a thread."""
        sample, reachable = _Sample(), 0
        for url in self.urls:
            try:
                parse(self.fetch(url), sample)
                reachable += 1
            except Exception as exc:  # a worker restarting must not break the page
                log.debug("cannot scrape %s: %s", url, exc)
        now = time.monotonic()
        ev_rate = list_rate = None
        if self._prev is not None and now > self._prev[0]:
            dt, old = now - self._prev[0], self._prev[1]
            ev_rate = max(0.0, sum(sample.events.values()) - sum(old.events.values())) / dt
            list_rate = max(0.0, sample.recommendations - old.recommendations) / dt
        self._prev = (now, sample)
        latency = {}
        for key in _HISTOGRAMS:
            b = sample.buckets.get(key, {})
            latency[key] = Latency(
                count=int(b.get(float("inf"), 0.0)), p50_s=quantile(b, 0.5), p95_s=quantile(b, 0.95)
            )
        return PipelineStats(
            workers=len(self.urls),
            reachable=reachable,
            latency=latency,
            events=sample.events,
            recommendations=sample.recommendations,
            events_per_s=ev_rate,
            lists_per_s=list_rate,
        )
