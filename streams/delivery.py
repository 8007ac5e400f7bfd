"""Every input record reaches the agents, in order, once per pass: a guard on Faust's consumer.

Why: under repeated worker crashes, Faust 0.15.3 commits input offsets past records no
agent ever saw. Traced on the embedded stack (docs/reliability.md, "Worker crashes"):

1. After a rebalance, ``Recovery.on_recovery_completed`` resumes the stream partitions and
   only then seeks them back to their committed offsets. In between, the fetcher hands out
   records from the committed position on; after the seek the drain loop goes on with the
   rest of the batch it fetched *before* the seek.
2. The drain loop sees the first of those records jump over the re-read range and takes
   the jump for a hole in the log ("gap"): it marks every offset in it as acked. The next
   commit moves past records that were never processed; a restart cannot bring them back.
   Kill storms lost hundreds of records per partition this way.

The guard sits between Faust's fetcher (``Consumer.getmany``) and its drain loop, for the
topics whose offsets Faust commits (the input topics; changelogs are read by recovery).
It knows the next offset each partition must deliver: every seek to committed sets it
(before the consumer moves, so no record fetched meanwhile is judged by the old one), and
every record delivered advances it. Then, whenever a record was fetched:

- a record at that offset is the right one, and is delivered;
- a record below it was delivered already in this pass (or lies before the committed
  offset) and is dropped;
- a record above it is a jump. The guard seeks the partition back and re-reads it. Only
  if the re-read shows the same jump is the hole real (compaction, transaction markers),
  and only then is it marked acked.

So a record the consumer skipped is always read again, as long as the consumer is never
left ahead of the guard without a seek: the records Faust itself drops (paused partitions,
a rebalance under way) are followed by its seek to committed, and the guard's own skips
by its seek back. The drain loop's own offset bookkeeping is neutralised (its read offset
is cleared before each record), so it never drops or gap-fills on its own. Seeks go
through the consumer's thread, like Faust's own.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


class FetchVerdict(enum.Enum):
    """What to do with one fetched record."""

    DELIVER = "deliver"  # the next record of its partition
    DROP = "drop"  # delivered already in this pass (a re-read after a seek back)
    REWIND = "rewind"  # records were skipped: seek back to the expected offset, re-read
    GAP = "gap"  # the re-read confirmed a real hole: deliver, and count the hole as acked


@dataclass
class OffsetGuard:
    """Per partition, the next offset the agents must see; pure bookkeeping, no I/O."""

    _next: dict[Any, int] = field(default_factory=dict)
    _rewound: dict[Any, int] = field(default_factory=dict)  # partition -> offset re-read from

    def seeked(self, targets: Mapping[Any, int]) -> None:
        """Every assigned partition is being moved to ``targets``."""
        self._next = dict(targets)
        self._rewound = {}

    def forget(self, tps: Iterable[Any]) -> None:
        """Partitions revoked: their position is unknown until the next seek."""
        for tp in tps:
            self._next.pop(tp, None)
            self._rewound.pop(tp, None)

    def expected(self, tp: Any) -> int | None:
        """The next offset partition ``tp`` must deliver (None: not known yet)."""
        return self._next.get(tp)

    def admit(self, tp: Any, offset: int) -> FetchVerdict:
        """Decide on the record at ``offset`` of ``tp``; a delivered one advances it."""
        want = self._next.get(tp)
        if want is None or offset == want:
            self._next[tp] = offset + 1
            self._rewound.pop(tp, None)
            return FetchVerdict.DELIVER
        if offset < want:
            return FetchVerdict.DROP
        if self._rewound.get(tp) == want:
            # We re-read from `want` and this came first: nothing lies in between.
            self._next[tp] = offset + 1
            del self._rewound[tp]
            return FetchVerdict.GAP
        self._rewound[tp] = want
        return FetchVerdict.REWIND


def _guard_of(consumer: Any) -> OffsetGuard:
    guard: OffsetGuard | None = getattr(consumer, "_resonate_guard", None)
    if guard is None:
        guard = consumer._resonate_guard = OffsetGuard()
    return guard


def guard_deliveries(*, on_reread: Callable[[str], None] = lambda topic: None) -> None:
    """Install the guard on Faust's consumer (once per worker process, before the app).

    ``on_reread(topic)`` is called for every re-read (a counter: an SRE sees rebalance
    races happen and be recovered from).
    """
    from faust.transport import consumer as base
    from faust.transport.drivers import aiokafka as driver

    fetch: Any = base.Consumer.getmany  # an async generator function, typed as an iterator
    base.Consumer.getmany = _guarded_getmany(fetch, on_reread)  # type: ignore[method-assign,assignment]
    driver.AIOKafkaConsumerThread.seek_to_committed = _seek_to_committed  # type: ignore[method-assign,assignment]
    revoked = base.Consumer.on_partitions_revoked

    async def on_partitions_revoked(self: Any, tps: Any) -> None:
        _guard_of(self).forget(tps)
        await revoked(self, tps)

    base.Consumer.on_partitions_revoked = on_partitions_revoked  # type: ignore[method-assign]


def _guarded_getmany(
    fetch: Callable[[Any, float], AsyncGenerator[tuple[Any, Any], None]],
    on_reread: Callable[[str], None] = lambda topic: None,
) -> Callable[[Any, float], AsyncGenerator[tuple[Any, Any], None]]:
    async def getmany(self: Any, timeout: float) -> AsyncGenerator[tuple[Any, Any], None]:
        guard = _guard_of(self)
        guarded = self.app.topics.acks_enabled_for
        rewound: set[Any] = set()  # partitions sought back during this batch
        records = fetch(self, timeout)
        try:
            async for tp, message in records:
                if not guarded(message.topic):
                    yield tp, message
                    continue
                if tp in rewound:
                    continue
                want = guard.expected(tp)
                verdict = guard.admit(tp, message.offset)
                if verdict is FetchVerdict.DROP:
                    continue
                if verdict is FetchVerdict.REWIND:
                    rewound.add(tp)
                    # Info, not warning: a transactional producer's markers cause one
                    # per transaction; resonate_input_rereads_total counts them all.
                    log.info(
                        "%s: got offset %d, expected %s: re-reading from %s",
                        tp,
                        message.offset,
                        want,
                        want,
                    )
                    on_reread(message.topic)
                    await _seek_back(self, tp, want)
                    continue
                if verdict is FetchVerdict.GAP and want is not None:
                    log.info("%s: offsets %d..%d hold no record", tp, want, message.offset - 1)
                    await self._add_gap(tp, want, message.offset - 1)
                # Faust's drain loop compares with its own read offset and would drop or
                # gap-fill on its own; the guard has decided already.
                self._read_offset[tp] = None
                yield tp, message
        finally:
            await records.aclose()

    return getmany


async def _seek_back(consumer: Any, tp: Any, offset: int | None) -> None:
    if offset is None:
        return
    try:
        await consumer._thread.seek_wait({tp: offset})
    except Exception as exc:  # revoked meanwhile: the next assignment seeks it anyway
        log.warning("%s: could not seek back to %d (%r)", tp, offset, exc)


async def _seek_to_committed(self: Any) -> Mapping[Any, int]:
    """Faust's "seek every partition to its committed offset", made exact.

    aiokafka's ``seek_to_committed`` leaves partitions without a committed offset where
    they are: after records were fetched and dropped during a rebalance, a partition taken
    over from a worker that crashed before its first commit would start past them. Such
    partitions go to their first offset here (``consumer_auto_offset_reset="earliest"``;
    records applied already are recognised by event id). The guard learns the targets
    before the consumer moves.
    """
    consumer = self._ensure_consumer()
    is_changelog = self.consumer._is_changelog_tp

    async def targets_of() -> tuple[dict[Any, int | None], dict[Any, int]]:
        committed = {tp: await consumer.committed(tp) for tp in consumer.assignment()}
        targets = {tp: off for tp, off in committed.items() if off and not is_changelog(tp)}
        unset = [tp for tp, off in committed.items() if not off and not is_changelog(tp)]
        if unset:
            targets.update(await consumer.beginning_offsets(unset))
            log.info("no committed offset for %s: reading them from the first", unset)
        return committed, targets

    async def seek(targets: Mapping[Any, int]) -> None:
        for tp, off in targets.items():
            consumer.seek(tp, off)

    committed, targets = await self.call_thread(targets_of)
    _guard_of(self.consumer).seeked(targets)
    await self.call_thread(seek, targets)
    return committed
