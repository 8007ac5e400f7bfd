"""Consumer lag of the workers' consumer group, per topic and partition, as metrics.

:class:`LagReader` asks the broker (kafka-python's admin client, blocking, with timeouts)
for the group's committed offsets and the partitions' end offsets; :class:`LagCollector`
runs it every ``interval_s`` in a daemon thread of a worker (``streams.runtime``) and sets
``resonate_consumer_lag_messages`` and ``resonate_consumer_lag_seconds``. ``resonate status``
uses the same reader.

Topics: every partition the group has committed (interactions, track-uploads), plus the
configured input topics' partitions before their first commit (lag = end offset, since the
workers start from the earliest offset). Changelog topics are read by table recovery
without commits and are not reported.

End offsets are Kafka's ListOffsets(latest) answers (the high watermark). Every worker
runs a collector and reports the same group-wide numbers: aggregate with
``max by (topic, partition)``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import kafka.errors as kerrors
from kafka import TopicPartition
from kafka.admin import KafkaAdminClient, OffsetSpec

from serving.kafka_security import PLAINTEXT, KafkaSecurity
from streams.metrics import Metrics

log = logging.getLogger(__name__)


class LagError(RuntimeError):
    """The broker could not be asked for offsets (unreachable, timed out, refused)."""


@dataclass(frozen=True)
class PartitionLag:
    """Offsets of one partition for the consumer group."""

    topic: str
    partition: int
    committed: int  # -1 = nothing committed yet
    end: int

    @property
    def lag(self) -> int:
        """Messages not yet consumed (by committed offset)."""
        return max(0, self.end - max(self.committed, 0))


class LagReader:
    """Committed vs end offsets of ``group_id``; a context manager around the admin client."""

    def __init__(
        self,
        *,
        bootstrap: str,
        group_id: str,
        topics: Iterable[str] = (),
        timeout_s: float = 10.0,
        security: KafkaSecurity = PLAINTEXT,
    ) -> None:
        self.bootstrap = bootstrap
        self.security = security
        self.group_id = group_id
        self.topics = list(topics)
        self.timeout_s = timeout_s
        self._admin: KafkaAdminClient | None = None

    def start(self) -> LagReader:
        """Open the admin client (raises LagError when Kafka cannot be reached)."""
        ms = max(1, int(self.timeout_s * 1000))
        try:
            self._admin = KafkaAdminClient(
                bootstrap_servers=self.bootstrap,
                client_id="resonate-lag",
                request_timeout_ms=ms,
                bootstrap_timeout_ms=ms,
                **self.security.kafka_python(),
            )
        except kerrors.KafkaError as exc:
            raise LagError(f"cannot reach Kafka at {self.bootstrap}: {exc}") from exc
        return self

    def stop(self) -> None:
        """Close the admin client (idempotent)."""
        if self._admin is not None:
            self._admin.close()
            self._admin = None

    def __enter__(self) -> LagReader:
        return self.start()  # a failed start leaves nothing open to stop

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def read(self) -> list[PartitionLag]:
        """One snapshot, sorted by topic and partition."""
        admin = self._admin
        if admin is None:
            raise LagError("LagReader is not open (use it as a context manager)")
        try:
            groups = admin.list_group_offsets({self.group_id: None})
            committed: dict[TopicPartition, int] = {
                tp: int(meta.offset) for tp, meta in (groups.get(self.group_id) or {}).items()
            }
            wanted = set(committed)
            if self.topics:
                existing = set(admin.list_topics())
                for t in admin.describe_topics([t for t in self.topics if t in existing]):
                    for p in t.get("partitions") or []:
                        wanted.add(
                            TopicPartition(
                                t["name"], int(p.get("partition_index", p.get("partition")))
                            )
                        )
            if not wanted:
                return []
            ends = admin.list_partition_offsets(
                {tp: OffsetSpec.LATEST for tp in wanted},
                timeout_ms=max(1, int(self.timeout_s * 1000)),
            )
        except kerrors.KafkaError as exc:
            raise LagError(f"offsets of group {self.group_id!r}: {exc}") from exc
        out = [
            PartitionLag(
                topic=tp.topic,
                partition=tp.partition,
                committed=committed.get(tp, -1),
                end=_offset(ends[tp]),
            )
            for tp in wanted
            if tp in ends
        ]
        return sorted(out, key=lambda p: (p.topic, p.partition))


def _offset(value: Any) -> int:
    """The offset of a ListOffsets answer (an OffsetAndTimestamp-like tuple or an int)."""
    return int(getattr(value, "offset", value))


class LagCollector:
    """Reads lag every ``interval_s`` in a daemon thread and sets the worker's gauges."""

    def __init__(
        self,
        *,
        reader: LagReader,
        metrics: Metrics,
        interval_s: float = 5.0,
        stall_after_s: float = 45.0,
    ) -> None:
        self.reader = reader
        self.metrics = metrics
        self.interval_s = interval_s
        self.stall_after_s = stall_after_s
        self._moved: dict[tuple[str, int], tuple[int, float]] = {}  # committed, since when
        self.stalled: list[tuple[PartitionLag, float]] = []  # the last snapshot's
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._caught_up_at: dict[tuple[str, int], float] = {}

    def observe(self, snapshot: list[PartitionLag], *, now: float | None = None) -> None:
        """Set the gauges from one snapshot (``now``: monotonic seconds, for tests)."""
        now = time.monotonic() if now is None else now
        for p in snapshot:
            key = (p.topic, p.partition)
            if p.lag == 0 or key not in self._caught_up_at:
                # First sight counts as caught up: the age is unknown before we looked.
                self._caught_up_at[key] = now
            labels = {"topic": p.topic, "partition": str(p.partition)}
            self.metrics.consumer_lag.labels(**labels).set(p.lag)
            self.metrics.consumer_lag_seconds.labels(**labels).set(
                0.0 if p.lag == 0 else now - self._caught_up_at[key]
            )
        self._observe_progress(snapshot, now)

    def _observe_progress(self, snapshot: list[PartitionLag], now: float) -> None:
        """A partition whose committed offset stands still while records wait has stalled:
        one message the agent cannot get past (a send retried, a dependency, a bug) stops
        every listener of that partition. Unlike the lag age, this does not grow while the
        partition moves under a steady backlog."""
        stalled: list[tuple[PartitionLag, float]] = []
        for p in snapshot:
            key = (p.topic, p.partition)
            last = self._moved.get(key)
            if p.lag == 0 or last is None or last[0] != p.committed:
                self._moved[key] = (p.committed, now)
            since = now - self._moved[key][1] if p.lag > 0 else 0.0
            labels = {"topic": p.topic, "partition": str(p.partition)}
            self.metrics.stalled.labels(**labels).set(since)
            if since >= self.stall_after_s:
                stalled.append((p, since))
        if stalled and not self.stalled:
            for p, since in stalled:
                log.error(
                    "%s[%d] stalled: %d records wait behind offset %d, not moved for %.0f s",
                    p.topic,
                    p.partition,
                    p.lag,
                    p.committed,
                    since,
                )
        self.stalled = stalled
        self.metrics.set_stalled(bool(stalled))

    def collect_once(self) -> list[PartitionLag]:
        """One collection; errors are counted and logged, never raised."""
        try:
            snapshot = self.reader.read()
        except LagError as exc:
            self.metrics.lag_collections.labels(outcome="error").inc()
            log.warning("consumer lag not collected: %s", exc)
            return []
        self.observe(snapshot)
        self.metrics.lag_collections.labels(outcome="ok").inc()
        return snapshot

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with self.reader:
                    while not self._stop.is_set():
                        self.collect_once()
                        self._stop.wait(self.interval_s)
            except LagError as exc:  # broker not reachable yet: retry later
                self.metrics.lag_collections.labels(outcome="error").inc()
                log.warning("lag collector: %s", exc)
                self._stop.wait(self.interval_s)

    def start(self) -> None:
        """Start the collecting thread (a daemon: it never blocks the worker's exit)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="lag-collector", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.reader.timeout_s + 1)
            self._thread = None


def start_lag_collector(
    *,
    bootstrap: str,
    group_id: str,
    topics: Iterable[str],
    metrics: Metrics,
    interval_s: float = 5.0,
    timeout_s: float = 10.0,
    stall_after_s: float = 45.0,
    security: KafkaSecurity = PLAINTEXT,
) -> LagCollector:
    """Build and start a collector (what ``streams.runtime`` calls)."""
    reader = LagReader(
        bootstrap=bootstrap,
        group_id=group_id,
        topics=topics,
        timeout_s=timeout_s,
        security=security,
    )
    collector = LagCollector(
        reader=reader, metrics=metrics, interval_s=interval_s, stall_after_s=stall_after_s
    )
    collector.start()
    return collector
