"""The track statistics every worker keeps: plays, skips, co-plays, uploads.

Why not a Faust table keyed by track: that needs one signal record per event and track on
an internal topic, its changelog and a hop (2.3 + 2.3 records per interaction measured), and
a sort of the whole table per refresh. Instead each fold batch writes ONE
:class:`~streams.state.CatalogDelta` to the internal ``track-deltas`` topic; every worker
reads all its partitions (no consumer group, like a Faust global table) and folds the
deltas into this in-memory :class:`Catalog`. A worker that (re)starts replays the topic from
the beginning before it declares itself ready. Popular and fresh lists are recomputed at
most once per ``ttl_s``, not per refresh.

What the counts mean: ``plays[t]`` is the number of listeners who played or liked ``t``
and ``skips[t]`` the number who skipped it, each listener counted once (within what their
state remembers, see :meth:`streams.state.DeltaBuilder.interaction`); co-plays likewise grow
by at most one per track a listener plays. So popularity measures an audience, and one
listener cannot make a track "popular" for everyone by repeating it. A track is fresh while
``0 <= now - uploaded_at <= window`` (:func:`schemas.event_time.is_fresh`).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from schemas.event_time import is_fresh
from serving.kafka_security import PLAINTEXT, KafkaSecurity
from streams.fusion import track_label
from streams.state import COPLAY_LIMIT, CatalogDelta

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrackInfo:
    """A track as the ranking sees it: popularity and metadata."""

    track_id: str
    popularity: float
    artist_id: str | None = None
    uploaded_at_ms: int | None = None


class Catalog:
    """Track statistics folded from deltas; mutate only from the event loop."""

    def __init__(self, *, ttl_s: float = 1.0, dedupe: int = 100_000) -> None:
        self.ttl_s = ttl_s
        self.plays: dict[str, int] = {}
        self.skips: dict[str, int] = {}
        self.coplays: dict[str, dict[str, int]] = {}
        self.artists: dict[str, str] = {}
        self.by_artist: dict[str, set[str]] = {}  # artist -> tracks (artist candidates)
        # Each artist's most popular tracks, until the popular list is next recomputed: every
        # listener of a batch who plays the artist asks.
        self._artist_top: dict[str, dict[int, list[str]]] = {}
        self.uploaded: dict[str, int] = {}
        self.labels: dict[str, str] = {}  # "title by artist", how reasons name a track
        self._top: dict[str, dict[str, int]] = {}  # strongest co-plays, until the next change
        self._seen: OrderedDict[str, None] = OrderedDict()  # applied delta ids, bounded
        self._dedupe = dedupe
        self._lists_at = -1e18
        # Key of the deltas this catalog applies in place (its worker's own): the feed skips
        # them undecoded. Per instance, so a restarted worker reads its old deltas again.
        self.origin = uuid.uuid4().hex.encode()
        self._popular: list[TrackInfo] = []
        self._fresh: list[TrackInfo] = []
        self.applied = 0

    def apply(self, delta: CatalogDelta) -> bool:
        """Fold one delta; False (and nothing changes) when it was applied before."""
        if delta.delta_id in self._seen:
            return False
        self._seen[delta.delta_id] = None
        if len(self._seen) > self._dedupe:
            self._seen.popitem(last=False)
        for t, n in delta.plays.items():
            self.plays[t] = self.plays.get(t, 0) + n
        for t, n in delta.skips.items():
            self.skips[t] = self.skips.get(t, 0) + n
        for t, others in delta.coplays.items():
            self._top.pop(t, None)
            co = self.coplays.setdefault(t, {})
            for o, n in others.items():
                co[o] = co.get(o, 0) + n
            if len(co) > COPLAY_LIMIT * 3 // 2:  # trim in steps, not on every insert
                self.coplays[t] = dict(heapq.nlargest(COPLAY_LIMIT, co.items(), key=_count))
        for t, a in delta.artists.items():
            self._set_artist(t, a)
        for t, info in delta.uploads.items():
            if info.artist_id:
                self._set_artist(t, info.artist_id)
            if label := track_label(info.title or "", info.artist_id or ""):
                self.labels[t] = label
            self.uploaded[t] = info.uploaded_at_ms
        self.applied += 1
        return True

    def _set_artist(self, track_id: str, artist: str) -> None:
        old = self.artists.get(track_id)
        if old == artist:
            return
        if old is not None:
            self.by_artist.get(old, set()).discard(track_id)
        self.artists[track_id] = artist
        self.by_artist.setdefault(artist, set()).add(track_id)
        # Only these two artists' lists changed: a batch names new artists all the time.
        self._artist_top.pop(artist, None)
        if old is not None:
            self._artist_top.pop(old, None)

    def tracks_by(self, artist: str, n: int) -> list[str]:
        """The artist's ``n`` most popular tracks (ties on id: deterministic); as fresh as
        the popular list (``ttl_s``)."""
        cached = self._artist_top.setdefault(artist, {})
        top = cached.get(n)
        if top is None:
            tracks = self.by_artist.get(artist, ())
            top = [t for _, t in heapq.nsmallest(n, ((-self.popularity(t), t) for t in tracks))]
            cached[n] = top
        return top

    def popularity(self, track_id: str) -> float:
        """Listeners who played it, net of those who skipped it; a skip is weaker evidence
        than a play, so it counts half."""
        return max(0.0, self.plays.get(track_id, 0) - 0.5 * self.skips.get(track_id, 0))

    def info(self, track_id: str) -> TrackInfo:
        """What the ranking needs of one track."""
        return TrackInfo(
            track_id=track_id,
            popularity=self.popularity(track_id),
            artist_id=self.artists.get(track_id),
            uploaded_at_ms=self.uploaded.get(track_id),
        )

    def coplays_of(self, track_id: str, top: int | None = None) -> Mapping[str, int]:
        """Neighbours co-played with ``track_id`` in a session, with counts; the ``top``
        strongest only when given (cached until the track's co-plays change)."""
        co = self.coplays.get(track_id, {})
        if top is None or len(co) <= top:
            return co
        cached = self._top.get(track_id)
        if cached is None or len(cached) != top:
            cached = self._top[track_id] = dict(heapq.nlargest(top, co.items(), key=_count))
        return cached

    def lists(
        self, *, top_popular: int, top_fresh: int, now_ms: int, fresh_window_ms: int
    ) -> tuple[list[TrackInfo], list[TrackInfo]]:
        """Most popular and newest-upload tracks, recomputed at most once per ``ttl_s``."""
        now = time.monotonic()
        if now - self._lists_at >= self.ttl_s:
            pops = heapq.nsmallest(
                top_popular,
                ((-self.popularity(t), t) for t in self.plays),
            )
            self._popular = [self.info(t) for p, t in pops if p < 0]
            fresh = heapq.nsmallest(
                top_fresh,
                (
                    (-at, t)
                    for t, at in self.uploaded.items()
                    if is_fresh(at, now_ms=now_ms, window_ms=fresh_window_ms)
                ),
            )
            self._fresh = [self.info(t) for _, t in fresh]
            self._artist_top.clear()
            self._lists_at = now
        return self._popular, self._fresh


def _count(kv: tuple[str, int]) -> int:
    return kv[1]


class CatalogFeed:
    """Reads every partition of ``track-deltas`` into a :class:`Catalog` (aiokafka, no group).

    ``caught_up`` is set once the feed has read up to the end offsets it found at start,
    so a worker does not rank with half a catalog after a restart.
    """

    def __init__(
        self,
        *,
        bootstrap: str,
        topic: str,
        catalog: Catalog,
        fetch_max_wait_ms: int,
        on_delta: Callable[[CatalogDelta], None] | None = None,
        start_timeout_s: float = 60.0,
        security: KafkaSecurity = PLAINTEXT,
    ) -> None:
        self.bootstrap = bootstrap
        self.security = security
        self.topic = topic
        self.catalog = catalog
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.on_delta = on_delta
        self.start_timeout_s = start_timeout_s
        self.caught_up = asyncio.Event()
        self.invalid = 0

    async def run(self) -> None:
        """Consume until cancelled."""
        from aiokafka import AIOKafkaConsumer, TopicPartition

        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            group_id=None,
            fetch_max_wait_ms=self.fetch_max_wait_ms,
            auto_offset_reset="earliest",
            **self.security.aiokafka(),
        )
        await consumer.start()
        try:
            parts = await self._partitions(consumer)
            tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            log.info("catalog feed: replaying %s records of %s", sum(ends.values()), self.topic)
            await self._check_caught_up(consumer, ends)
            while True:
                batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
                own = self.catalog.origin
                for records in batch.values():
                    for r in records:
                        if r.key != own:  # our own deltas were applied when made
                            self._apply(r.value)
                if not self.caught_up.is_set():
                    await self._check_caught_up(consumer, ends)
        finally:
            await consumer.stop()

    async def _partitions(self, consumer: Any) -> set[int]:
        from serving.kafka_reader import partitions_of

        found = await partitions_of(consumer, [self.topic], timeout_s=self.start_timeout_s)
        if self.topic not in found:
            raise RuntimeError(f"topic {self.topic} did not appear")
        return found[self.topic]

    async def _check_caught_up(self, consumer: Any, ends: Mapping[Any, int]) -> None:
        for tp, end in ends.items():
            if await consumer.position(tp) < end:
                return
        log.info("catalog feed caught up (%d deltas applied)", self.catalog.applied)
        self.caught_up.set()

    def _apply(self, raw: bytes | None) -> None:
        try:
            delta = CatalogDelta.model_validate_json(raw or b"")
        except ValidationError as exc:  # only our own workers write here; never stop on it
            self.invalid += 1
            log.warning("invalid catalog delta skipped: %s", exc.errors()[:1])
            return
        if self.catalog.apply(delta) and self.on_delta is not None:
            self.on_delta(delta)
