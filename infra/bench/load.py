"""Black-box load: interactions in, recommendations out, through the public topics only.

* :class:`SessionWorkload` - listeners in sessions of 3-12 events, Zipf track choice,
  20% skips (or :class:`ReplayWorkload`, a real log in time order).
* :func:`open_loop` - sends at a fixed offered rate whatever the system does (a closed
  loop would slow down with the system and hide its limit), while a reader matches every
  recommendation to the events it answers (``Recommendation.event_ids``).
* :func:`relay_limit` - the broker's pipe limit: a bare aiokafka consume->produce relay
  with the stack's own producer settings, measured in the same run.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from serving.kafka_reader import partitions_of
from serving.kafka_security import PLAINTEXT, KafkaSecurity

log = logging.getLogger(__name__)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


@dataclass
class SessionWorkload:
    """Listeners in sessions of 3-12 events, Zipf track choice, a share of skips."""

    tracks: Sequence[str]
    listeners: int = 2000
    skip_rate: float = 0.2
    zipf_a: float = 1.1
    seed: int = 0
    _rng: np.random.Generator = field(init=False, repr=False)
    _left: dict[int, int] = field(init=False, repr=False, default_factory=dict)
    _cdf: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed)
        ranks = np.arange(1, len(self.tracks) + 1, dtype=np.float64)
        p = ranks**-self.zipf_a
        self._cdf = np.minimum(np.cumsum(p / p.sum()), 1.0)
        self._cdf[-1] = 1.0

    def batch(self, n: int) -> list[tuple[str, str, str]]:
        """The next ``n`` interactions (drawn together: cheap enough for 1,000s per second)."""
        users = self._rng.integers(self.listeners, size=n)
        tracks = np.searchsorted(self._cdf, self._rng.random(n))
        skips = self._rng.random(n) < self.skip_rate
        out = []
        for u, t, skip in zip(users.tolist(), tracks.tolist(), skips.tolist(), strict=True):
            if self._left.get(u, 0) <= 0:
                self._left[u] = int(self._rng.integers(3, 13))  # a new session
            self._left[u] -= 1
            out.append((f"listener-{u}", self.tracks[t], "skip" if skip else "play"))
        return out


@dataclass
class ReplayWorkload:
    """A real log (user, track) in time order, replayed as plays; wraps around at the end."""

    events: Sequence[tuple[str, str]]
    _i: int = 0

    def batch(self, n: int) -> list[tuple[str, str, str]]:
        out = []
        for _ in range(n):
            u, t = self.events[self._i % len(self.events)]
            self._i += 1
            out.append((f"replay-{u}", t, "play"))
        return out


@dataclass
class StepResult:
    """One offered rate, measured."""

    offered_per_s: float
    seconds: float
    sent: int
    answered: int
    lists: int
    latencies_ms: list[float] = field(repr=False, default_factory=list)
    backlog: list[tuple[float, int]] = field(repr=False, default_factory=list)

    def summary(self) -> dict[str, Any]:
        lat = np.asarray(self.latencies_ms) if self.latencies_ms else np.asarray([np.nan])
        slope = 0.0
        if len(self.backlog) >= 4:
            xs, ys = zip(*self.backlog[len(self.backlog) // 2 :], strict=True)
            slope = float(np.polyfit(xs, ys, 1)[0]) if len(set(xs)) > 1 else 0.0
        return {
            "offered_per_s": self.offered_per_s,
            "sent_per_s": round(self.sent / self.seconds, 1),
            "answered_per_s": round(self.answered / self.seconds, 1),
            "lists_per_s": round(self.lists / self.seconds, 1),
            "answered_frac": round(self.answered / max(1, self.sent), 4),
            "p50_ms": round(float(np.nanpercentile(lat, 50)), 1),
            "p95_ms": round(float(np.nanpercentile(lat, 95)), 1),
            "p99_ms": round(float(np.nanpercentile(lat, 99)), 1),
            "backlog_slope_per_s": round(slope, 1),
        }


async def consumer_at_end(
    bootstrap: str, topic: str, *, fetch_max_wait_ms: int, security: KafkaSecurity
) -> Any:
    """A started group-less aiokafka consumer of every partition of ``topic``, at its end
    (no group: the bench's reader shares nothing with another)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        fetch_max_wait_ms=fetch_max_wait_ms,
        **security.aiokafka(),
    )
    await consumer.start()
    parts = (await partitions_of(consumer, [topic], timeout_s=30.0)).get(topic, set())
    tps = [TopicPartition(topic, p) for p in sorted(parts)]
    consumer.assign(tps)
    await consumer.seek_to_end(*tps)
    return consumer


class Reader:
    """Reads the recommendations topic (no group, from its end) and times every answer."""

    def __init__(
        self,
        *,
        bootstrap: str,
        topic: str,
        fetch_max_wait_ms: int,
        security: KafkaSecurity = PLAINTEXT,
    ) -> None:
        self.bootstrap, self.topic, self.wait_ms = bootstrap, topic, fetch_max_wait_ms
        self.security = security
        self.sent_at: dict[str, float] = {}
        self.latencies_ms: list[float] = []
        self.answered = 0
        self.lists = 0
        self._consumer: Any = None

    async def start(self) -> None:
        self._consumer = await consumer_at_end(
            self.bootstrap, self.topic, fetch_max_wait_ms=self.wait_ms, security=self.security
        )

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            batch = await self._consumer.getmany(timeout_ms=100, max_records=5000)
            now = time.time()
            for records in batch.values():
                for r in records:
                    self.lists += 1
                    for eid in json.loads(r.value).get("event_ids", []):
                        t0 = self.sent_at.pop(eid, None)
                        if t0 is not None:
                            self.answered += 1
                            self.latencies_ms.append((now - t0) * 1000)

    async def stop(self) -> None:
        await self._consumer.stop()


async def open_loop(
    *,
    bootstrap: str,
    topic: str,
    reader: Reader,
    rate: float,
    seconds: float,
    next_batch: Callable[[int], list[tuple[str, str, str]]],
    drain_s: float = 3.0,
    on_tick: Callable[[float], None] | None = None,
    security: KafkaSecurity = PLAINTEXT,
) -> StepResult:
    """Offer ``rate`` interactions/s for ``seconds`` in 10 ms ticks; then let it drain."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=5, acks=1, **security.aiokafka()
    )
    await producer.start()
    res = StepResult(offered_per_s=rate, seconds=seconds, sent=0, answered=0, lists=0)
    a0, l0, lat0 = reader.answered, reader.lists, len(reader.latencies_ms)
    tick, t_start = 0.01, time.monotonic()
    try:
        while (elapsed := time.monotonic() - t_start) < seconds:
            # What is due by now, not per tick: a tick that overruns (the send loop, a late
            # wake-up) is caught up in the next one, so the offered rate is the rate sent.
            n = max(0, int(rate * elapsed) - res.sent)
            now = time.time()
            for user, track, kind in next_batch(n):
                eid = uuid.uuid4().hex
                value = json.dumps(
                    {
                        "event_id": eid,
                        "type": kind,
                        "user_id": user,
                        "track_id": track,
                        "occurred_at": _iso(now),
                    }
                ).encode()
                reader.sent_at[eid] = now
                await producer.send(topic, value=value, key=user.encode())
                res.sent += 1
            res.backlog.append((elapsed, res.sent - (reader.answered - a0)))
            if on_tick is not None:
                on_tick(elapsed)
            await asyncio.sleep(tick)
        await producer.flush()
        deadline = time.monotonic() + drain_s
        while reader.answered - a0 < res.sent and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    finally:
        await producer.stop()
    res.answered = reader.answered - a0
    res.lists = reader.lists - l0
    res.latencies_ms = reader.latencies_ms[lat0:]
    return res


async def relay_limit(
    *,
    bootstrap: str,
    source: str,
    sink: str,
    n: int,
    max_batch_bytes: int,
    linger_ms: int,
    security: KafkaSecurity = PLAINTEXT,
) -> dict[str, float]:
    """Drain ``n`` pre-loaded records from ``source`` into ``sink`` as fast as possible
    (aiokafka consume -> produce, the stack's producer batching): the pipe limit."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    prod = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        max_batch_size=max_batch_bytes,
        linger_ms=linger_ms,
        **security.aiokafka(),
    )
    await prod.start()
    try:
        payload = b'{"event_id": "x", "type": "play", "user_id": "u", "track_id": "t"}'
        for i in range(n):
            await prod.send(source, value=payload, key=str(i % 997).encode())
        await prod.flush()
        cons = AIOKafkaConsumer(
            source,
            bootstrap_servers=bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=25,
            **security.aiokafka(),
        )
        await cons.start()
        t0, done = time.perf_counter(), 0
        try:
            while done < n and time.perf_counter() - t0 < 120:
                batch = await cons.getmany(timeout_ms=200, max_records=5000)
                for records in batch.values():
                    for r in records:
                        await prod.send(sink, value=r.value, key=r.key)
                        done += 1
            await prod.flush()
        finally:
            await cons.stop()
        secs = time.perf_counter() - t0
    finally:
        await prod.stop()
    return {"records": done, "seconds": round(secs, 2), "per_s": round(done / secs, 1)}


def chunks(seq: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(seq), size):
        yield seq[i : i + size]
