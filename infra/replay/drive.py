"""Sending a replay through a running stack and keeping the list each event met.

:func:`drive` sends a :class:`~infra.replay.plan.ReplayPlan`'s events in time order on the
``interactions`` topic, compressed by ``speedup`` (event ``e`` is due ``(e.at - t_min) /
speedup`` seconds after the start), while a :class:`ListReader` follows the
``recommendations`` topic. For each observed event (a scored one, or a play of an uploaded
track) it takes the **last list the listener had received before the event was sent**.

Time compression and fairness: a real listener's plays are minutes apart, far longer than the
system needs to answer, but compressed they may be milliseconds apart. So before an observed
event is sent the driver waits (event-driven, bounded by ``answer_timeout_s``) until the list
answering the listener's previous event has arrived: the list then reflects everything the
listener did before, as it would at real pace. Events that are not observed are not held back.
An event whose previous event was not answered within the bound is still scored, against the
older list, and counted as ``stale``.

``occurred_at``: the log's own times shifted so that its last event is "now" at the start
(gaps kept, not compressed). Why not compress them too: the session rule
(``session_gap_s``, co-plays only within a session) and the recency order then see the real
sessions without touching any setting, and no event lies in the future or beyond the
worker's accepted age (a 2014 log sent with its own dates would be rejected as too old).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from infra.bench.load import consumer_at_end
from infra.replay.plan import ReplayPlan
from serving.kafka_security import PLAINTEXT, KafkaSecurity

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Observation:
    """An observed event and the list it met."""

    index: int  # position in ``plan.events``
    lists: dict[str, tuple[str, ...]]  # kind -> the last list of that kind before it
    stale: bool  # the listener's previous event was still unanswered when this one was sent
    waited_s: float


@dataclass
class ListStats:
    """What the reader saw on the recommendations topic."""

    lists: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    lists_test: int = 0
    with_upload_test: int = 0
    shown_uploads: Counter[str] = field(default_factory=Counter)
    versions: Counter[str] = field(default_factory=Counter)


class ListReader:
    """Follows the recommendations topic (no group, from its end): each listener's last list
    of each kind, the event ids answered so far (by a list of every kind served), and
    counts of lists and model versions."""

    def __init__(
        self,
        *,
        bootstrap: str,
        topic: str,
        fetch_max_wait_ms: int,
        uploads: Collection[str],
        kinds: Collection[str],
        security: KafkaSecurity = PLAINTEXT,
    ) -> None:
        self.bootstrap, self.topic, self.wait_ms = bootstrap, topic, fetch_max_wait_ms
        self.security = security
        self.uploads = set(uploads)
        self.kinds = frozenset(kinds)
        self.last: dict[str, dict[str, tuple[str, ...]]] = {}  # user -> kind -> list
        self.answered: set[str] = set()  # answered by a list of every kind
        self._partly: dict[str, set[str]] = {}  # event id -> kinds that answered it so far
        self.stats = ListStats()
        self.test_period = False  # set by the driver once the first test-period event is sent
        self.changed = asyncio.Condition()
        self._consumer: Any = None

    async def start(self) -> None:
        self._consumer = await consumer_at_end(
            self.bootstrap, self.topic, fetch_max_wait_ms=self.wait_ms, security=self.security
        )

    def _take(self, raw: bytes) -> None:
        rec = json.loads(raw)
        items = tuple(str(i["track_id"]) for i in rec.get("items", []))
        kind = str(rec.get("kind", "new"))  # a list before kinds existed was a `new` one
        self.last.setdefault(rec["user_id"], {})[kind] = items
        for eid in rec.get("event_ids") or [rec.get("source_event_id")]:
            got = self._partly.setdefault(eid, set())
            got.add(kind)
            if got >= self.kinds:
                self.answered.add(eid)
                del self._partly[eid]
        st = self.stats
        st.lists += 1
        st.by_kind[kind] += 1
        st.versions[str(rec.get("model_version", ""))] += 1
        if self.test_period:
            st.lists_test += 1
            shown = self.uploads.intersection(items)
            st.with_upload_test += bool(shown)
            st.shown_uploads.update(shown)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            batch = await self._consumer.getmany(timeout_ms=100, max_records=5000)
            if not batch:
                continue
            for records in batch.values():
                for r in records:
                    self._take(r.value)
            async with self.changed:
                self.changed.notify_all()

    async def wait_answered(self, event_ids: Collection[str], timeout_s: float) -> bool:
        """True once every id is answered; False after ``timeout_s``."""
        async with self.changed:
            try:
                await asyncio.wait_for(
                    self.changed.wait_for(lambda: self.answered.issuperset(event_ids)),
                    timeout_s,
                )
            except TimeoutError:
                return False
        return True

    async def stop(self) -> None:
        await self._consumer.stop()


def _message(user: str, track: str, at: float, artist: str | None) -> tuple[str, bytes]:
    eid = uuid.uuid4().hex
    value = {
        "event_id": eid,
        "type": "play",
        "user_id": user,
        "track_id": track,
        "occurred_at": datetime.fromtimestamp(at, UTC).isoformat(),
        # The log's artist, as a platform sends it: the content of tracks without audio.
        "artist_id": artist,
    }
    return eid, json.dumps(value).encode()


@dataclass
class DriveResult:
    """What a replay observed."""

    observations: list[Observation]
    stats: ListStats
    sent: int
    answered: int
    seconds: float


async def drive(
    *,
    bootstrap: str,
    interactions: str,
    reader: ListReader,
    plan: ReplayPlan,
    speedup: float,
    answer_timeout_s: float = 10.0,
    drain_timeout_s: float = 120.0,
    security: KafkaSecurity = PLAINTEXT,
) -> DriveResult:
    """Send the plan's events (see the module docstring); return what each observed event met."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=5, acks=1, **security.aiokafka()
    )
    await producer.start()
    shift = time.time() - plan.t_max  # occurred_at = log time + shift: the last event is now
    last_sent: dict[str, str] = {}
    observed: list[Observation] = []
    sent_ids: list[str] = []
    t0 = time.monotonic()
    try:
        for n, ev in enumerate(plan.events):
            delay = t0 + (ev.at_s - plan.t_min) / speedup - time.monotonic()
            if delay > 0.002:
                await asyncio.sleep(delay)
            reader.test_period = reader.test_period or ev.test_period
            watch = ev.case is not None or (ev.test_period and ev.track in plan.uploads)
            if watch:
                observed.append(await _observe(reader, n, ev.user, last_sent, answer_timeout_s))
            eid, value = _message(ev.user, ev.track, ev.at_s + shift, plan.artists.get(ev.track))
            await producer.send(interactions, value=value, key=ev.user.encode())
            last_sent[ev.user] = eid
            sent_ids.append(eid)
            if n % 2000 == 0:
                log.info(
                    "replay: %d/%d events sent, %d lists", n, len(plan.events), reader.stats.lists
                )
        await producer.flush()
    finally:
        await producer.stop()
    # Drain: every event answered (or the bound), so the counts below are complete.
    await reader.wait_answered(sent_ids, drain_timeout_s)
    answered = sum(1 for e in sent_ids if e in reader.answered)
    return DriveResult(
        observations=observed,
        stats=reader.stats,
        sent=len(sent_ids),
        answered=answered,
        seconds=round(time.monotonic() - t0, 1),
    )


async def _observe(
    reader: ListReader, index: int, user: str, last_sent: dict[str, str], timeout_s: float
) -> Observation:
    """The list the listener holds now, after waiting for the answer to their last event."""
    t0 = time.monotonic()
    prev = last_sent.get(user)
    ok = True
    if prev is not None and prev not in reader.answered:
        ok = await reader.wait_answered([prev], timeout_s)
    return Observation(
        index=index,
        lists=dict(reader.last.get(user, {})),
        stale=not ok,
        waited_s=time.monotonic() - t0,
    )
