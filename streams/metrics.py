"""Prometheus metrics of a worker, on a registry of its own (no module-level globals)."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

# Seconds buckets spanning a fast in-memory hop (ms) to a slow cold upload (tens of s).
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    """All collectors one worker exposes; build one per process and pass it down."""

    def __init__(self, *, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events = Counter(
            "resonate_events_total",
            "Events consumed, by topic and outcome (ok, invalid, duplicate, rejected, error).",
            ["topic", "outcome"],
            registry=r,
        )
        self.upload_to_searchable = Histogram(
            "resonate_upload_to_searchable_seconds",
            "From an upload's uploaded_at to its vector being searchable in Milvus.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.event_to_recommendation = Histogram(
            "resonate_event_to_recommendation_seconds",
            "From an interaction's occurred_at to its refreshed recommendations being sent.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.triton_seconds = Histogram(
            "resonate_triton_call_seconds",
            "Triton audio-encoder calls (one batch of uploads).",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.milvus_seconds = Histogram(
            "resonate_milvus_call_seconds",
            "Milvus calls by operation.",
            ["op"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_step_seconds = Histogram(
            "resonate_batch_step_seconds",
            "Wall time of each step of an interaction batch (fold, sequences, audio, rank, "
            "emit), and of the whole batch: where a list's latency goes.",
            ["step"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.table_size = Gauge(
            "resonate_table_entries",
            "Entries in a Faust table held by this worker.",
            ["table"],
            registry=r,
        )
        self.ready = Gauge(
            "resonate_worker_ready",
            "1 once the worker owns partitions and has recovered its tables, and while no "
            "partition of its group with records waiting has stalled (stall_after_s).",
            registry=r,
        )
        self._assigned = False  # rebalanced and caught up (the app sets it)
        self._stalled = False  # a partition stalled (the lag collector sets it)
        self.stalled = Gauge(
            "resonate_partition_stalled_seconds",
            "Seconds a partition with records waiting has not moved its committed offset "
            "(0 while it moves or is caught up): one message stopping the stream shows here.",
            ["topic", "partition"],
            registry=r,
        )
        self.send_errors = Counter(
            "resonate_send_errors_total",
            "Failed attempts to write a dead letter or retry record, by topic and error class "
            "(what a stalled or waiting agent is retrying).",
            ["topic", "error"],
            registry=r,
        )
        self.recommendations = Counter(
            "resonate_recommendations_total",
            "Recommendation lists emitted, by how the user vector was made and kind of list.",
            ["source", "kind"],
            registry=r,
        )

        self.fold_batch = Histogram(
            "resonate_fold_batch_events",
            "Interactions taken in one fold batch (all partitions of the worker).",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
            registry=r,
        )
        self.fusion_weights = Gauge(
            "resonate_fusion_weights_info",
            "1 for the fusion-weights artifact version the worker ranks with.",
            ["version"],
            registry=r,
        )
        self.user_encoder_calls = Counter(
            "resonate_user_encoder_calls_total",
            "Calls of the served sequence model by outcome (ok, error, skipped while down).",
            ["outcome"],
            registry=r,
        )
        self.user_encoder_seconds = Histogram(
            "resonate_user_encoder_call_seconds",
            "Successful calls of the served sequence model.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )

        # --- operations (docs/metrics.md; alert rules in infra/prod/prometheus/alerts.yml) ---
        self.dead_letters = Counter(
            "resonate_dead_letters_total",
            "Messages given up on and set aside, by source topic and reason.",
            ["topic", "reason"],
            registry=r,
        )
        self.retries = Counter(
            "resonate_retries_total",
            "Messages sent to their retry topic for another attempt, by source topic and reason.",
            ["topic", "reason"],
            registry=r,
        )
        self.spooled = Counter(
            "resonate_dead_letters_spooled_total",
            "Dead letters or retries the broker would not take (past send_deadline_s, or a "
            "failure waiting cannot cure), written to the local spool instead (resonate dlq).",
            ["topic", "error"],
            registry=r,
        )
        self.letters_cut = Counter(
            "resonate_dead_letters_cut_total",
            "Dead letters whose original did not fit max_record_bytes: a prefix, its length "
            "and SHA-256 were sent instead (the original stays in its source topic).",
            ["topic"],
            registry=r,
        )
        self.waiting = Gauge(
            "resonate_agent_waiting",
            "1 while an agent waits on this (send: a dead letter or retry the broker does "
            "not acknowledge; dependency: Triton or Milvus down).",
            ["on"],
            registry=r,
        )
        self.rereads = Counter(
            "resonate_input_rereads_total",
            "Partitions re-read because the fetcher skipped past records during a rebalance "
            "(streams/delivery.py); the records are delivered, not lost.",
            ["topic"],
            registry=r,
        )
        self.dependency_up = Gauge(
            "resonate_dependency_up",
            "0 while the upload path waits out an outage of this dependency (triton, milvus).",
            ["dependency"],
            registry=r,
        )
        self.consumer_lag = Gauge(
            "resonate_consumer_lag_messages",
            "End offset minus the consumer group's committed offset, per topic and partition.",
            ["topic", "partition"],
            registry=r,
        )
        self.consumer_lag_seconds = Gauge(
            "resonate_consumer_lag_seconds",
            "Seconds since the partition was last seen fully consumed (0 when caught up): an "
            "upper bound on the age of its oldest unprocessed message.",
            ["topic", "partition"],
            registry=r,
        )
        self.lag_collections = Counter(
            "resonate_lag_collections_total",
            "Consumer-lag collections by outcome (ok, error).",
            ["outcome"],
            registry=r,
        )
        self.gc_seconds = Counter(
            "resonate_gc_seconds_total",
            "Time Python's garbage collector ran, by generation (nothing else runs meanwhile; "
            "a profiler files it under whatever allocated last).",
            ["generation"],
            registry=r,
        )

    def set_assigned(self, ok: bool) -> None:
        """The app's half of readiness: partitions assigned, tables and catalog caught up."""
        self._assigned = ok
        self.ready.set(1 if ok and not self._stalled else 0)

    def set_stalled(self, stalled: bool) -> None:
        """The lag collector's half: a partition with records waiting does not move."""
        self._stalled = stalled
        self.ready.set(1 if self._assigned and not stalled else 0)

    def time_gc(self) -> Callable[[str, dict[str, int]], None]:
        """Count every collection's duration in ``gc_seconds`` (once per process); the
        callback installed (``gc.callbacks.remove`` it to stop)."""
        started: list[float] = []
        by_gen = [self.gc_seconds.labels(generation=str(g)) for g in range(3)]

        def on_gc(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                started[:] = [time.perf_counter()]
            elif started:
                by_gen[info["generation"]].inc(time.perf_counter() - started[0])

        gc.callbacks.append(on_gc)
        return on_gc

    def serve(self, *, port: int, host: str = "127.0.0.1") -> None:
        """Expose /metrics on host:port (a daemon thread)."""
        start_http_server(port, addr=host, registry=self.registry)
