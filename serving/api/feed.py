"""What the API knows from Kafka: each listener's latest list and recent interactions, and
the tracks seen in uploads and interactions.

:class:`FeedState` is plain in-memory state (pure, tested without a broker);
:class:`KafkaFeed` fills it from the ``recommendations``, ``interactions`` and
``track-uploads`` topics, read from the beginning with manual partition assignment (no
consumer group: every API replica keeps the whole view). Readiness: caught up with the
end offsets seen at start.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from schemas.event_time import InputLimits, event_time_verdict
from schemas.events import Interaction, ListKind, Recommendation, TrackUpload
from schemas.settings import Settings
from serving.api.metrics import ApiMetrics
from serving.api.models import HistoryEntry
from serving.kafka_reader import partitions_of
from serving.kafka_security import KafkaSecurity

log = logging.getLogger(__name__)


def _wall_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class _Listener:
    latest: dict[ListKind, Recommendation] = field(default_factory=dict)
    history: deque[HistoryEntry] = field(default_factory=deque)


class FeedState:
    """Latest list and recent history per listener, upload metadata per track.

    ``version`` grows with every change; :meth:`wait_changed` lets live views (SSE) sleep
    until then. Single event loop: no locks needed.
    """

    def __init__(
        self, *, history: int, limits: InputLimits, clock_ms: Callable[[], int] = _wall_ms
    ) -> None:
        self.history_len = history
        self.limits = limits  # the worker's time rules, so the history shows what it applied
        self.clock_ms = clock_ms
        self.rejected = 0  # interactions the worker rejects too (never shown)
        self._users: dict[str, _Listener] = {}
        self.uploads: dict[str, TrackUpload] = {}
        self.played: set[str] = set()  # every track id seen in an interaction
        self.version = 0
        self._changed = asyncio.Condition()

    def listeners(self) -> list[str]:
        return sorted(self._users)

    def latest(self, user_id: str, kind: ListKind = ListKind.NEW) -> Recommendation | None:
        """The listener's latest list of ``kind``."""
        u = self._users.get(user_id)
        return u.latest.get(kind) if u else None

    def history(self, user_id: str) -> list[HistoryEntry] | None:
        """Newest first; None for a listener never seen."""
        u = self._users.get(user_id)
        return None if u is None else list(reversed(u.history))

    def knows_track(self, track_id: str) -> bool:
        return track_id in self.uploads or track_id in self.played

    def apply_recommendation(self, rec: Recommendation) -> None:
        """Per-user order is the topic's (keyed by user): the last one of a kind read is the
        latest of that kind."""
        self._users.setdefault(rec.user_id, _Listener()).latest[rec.kind] = rec
        self.version += 1

    def apply_interaction(self, ev: Interaction) -> None:
        """Keep ``ev`` in its listener's history if the worker applies it: an event time
        outside the window, or a day behind the listener's newest, is rejected there
        (dead-lettered) and never shown here; a replayed event id counts once."""
        at_ms = int(ev.occurred_at.timestamp() * 1000)
        if event_time_verdict(at_ms, now_ms=self.clock_ms(), limits=self.limits) is not None:
            self.rejected += 1
            return
        u = self._users.setdefault(ev.user_id, _Listener())
        if any(h.event_id == ev.event_id for h in u.history):
            return  # a replay
        newest = max((h.occurred_at for h in u.history), default=None)
        if newest is not None and (
            newest.timestamp() * 1000 - at_ms > self.limits.dedupe_horizon_ms
        ):
            self.rejected += 1  # late: behind the worker's replay floor
            return
        u.history.append(
            HistoryEntry(
                event_id=ev.event_id, type=ev.type, track_id=ev.track_id, occurred_at=ev.occurred_at
            )
        )
        while len(u.history) > self.history_len:
            u.history.popleft()
        self.played.add(ev.track_id)
        self.version += 1

    def apply_upload(self, ev: TrackUpload) -> None:
        self.uploads[ev.track_id] = ev
        self.version += 1

    async def notify(self) -> None:
        """Wake the live views (call after a batch of ``apply_*``)."""
        async with self._changed:
            self._changed.notify_all()

    async def wait_changed(self, since: int, timeout_s: float) -> int:
        """Return the version once it is past ``since`` (or after ``timeout_s``)."""
        async with self._changed:
            try:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: self.version > since), timeout_s
                )
            except TimeoutError:
                pass
        return self.version


class KafkaFeed:
    """Consume the three topics into a :class:`FeedState` until cancelled."""

    def __init__(self, *, settings: Settings, state: FeedState, metrics: ApiMetrics) -> None:
        s = settings
        self.settings = s
        self.state = state
        self.metrics = metrics
        self.roles = {
            s.topic(s.recommendations_topic): "recommendations",
            s.topic(s.interactions_topic): "interactions",
            s.topic(s.uploads_topic): "track-uploads",
        }
        self.caught_up = asyncio.Event()
        self._ends: dict[TopicPartition, int] = {}

    async def run(self) -> None:
        """Assign every partition of the topics, read from the beginning, apply forever."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=self.settings.fetch_max_wait_ms,
            **KafkaSecurity.from_settings(self.settings).aiokafka(),
        )
        await consumer.start()
        try:
            tps = await self._partitions(consumer)
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            self._ends = await consumer.end_offsets(tps)
            log.info("feed: %d partitions of %s", len(tps), ", ".join(self.roles))
            while True:
                batch = await consumer.getmany(timeout_ms=500, max_records=500)
                for tp, records in batch.items():
                    for r in records:
                        self._apply(self.roles[tp.topic], r.value)
                if batch:
                    await self.state.notify()
                if not self.caught_up.is_set() and await self._at_ends(consumer):
                    log.info("feed caught up (%d listeners)", len(self.state.listeners()))
                    self.caught_up.set()
        finally:
            await consumer.stop()

    async def _at_ends(self, consumer: AIOKafkaConsumer) -> bool:
        """Whether every partition is read up to the end offset seen at start."""
        for tp, end in self._ends.items():
            if await consumer.position(tp) < end:
                return False
        return True

    async def _partitions(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        """Every partition of the three topics, waiting for topics not created yet."""
        while True:
            found = await partitions_of(consumer, self.roles, timeout_s=60.0)
            if len(found) == len(self.roles):
                return [TopicPartition(t, p) for t, parts in found.items() for p in sorted(parts)]

    def _apply(self, role: str, value: bytes | None) -> None:
        try:
            if value is None:
                raise ValueError("empty record")
            if role == "recommendations":
                self.state.apply_recommendation(Recommendation.model_validate_json(value))
            elif role == "interactions":
                self.state.apply_interaction(Interaction.model_validate_json(value))
            else:
                self.state.apply_upload(TrackUpload.model_validate_json(value))
        except (ValidationError, ValueError) as exc:
            self.metrics.events.labels(topic=role, outcome="invalid").inc()
            log.warning("feed: invalid record on %s: %s", role, exc)
            return
        self.metrics.events.labels(topic=role, outcome="ok").inc()
