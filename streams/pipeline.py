"""The hot path of a worker, step by step, apart from Faust's wiring (``streams/app.py``).

    interactions batch --decode once--> fold (user-state, one read + one write per listener)
        --> dead letters for what could not be applied --> one catalog delta
        --> rank each touched listener once --> one list per listener
    uploads batch --decode once--> Uploader (fetch, decode, Triton, Milvus) --> one delta

:class:`Pipeline` holds the collaborators, injected: the table, the senders, the dead
letters, the refresher and the uploader. Its methods are what the agents call, so the
steps read top to bottom and can be driven without a broker.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Awaitable, Callable, Iterator, MutableMapping, Sequence
from contextlib import contextmanager
from typing import Any

from faust.streams import _current_event

from schemas.event_time import InputLimits
from schemas.events import Recommendation
from schemas.settings import Settings
from streams.candidates import VectorCache
from streams.catalog import Catalog
from streams.codec import InvalidEvent
from streams.deadletter import DeadLetters, Failed, InvalidMessage, OutOfWindow, Source
from streams.fold import Incoming, fold_batch
from streams.ingest import Uploader, UploadItem
from streams.metrics import Metrics
from streams.refresh import Refresher
from streams.state import CatalogDelta, UserState


@contextmanager
def routed_as(event: Any) -> Iterator[None]:
    """Make ``event`` Faust's current event while a table is written.

    Why: a table write goes to the changelog partition of the current event. In a batch
    taken from several partitions that is the batch's last event, not the listener's;
    each listener's state must land on its own partition or recovery loses it.
    """
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


class CatalogPublisher:
    """Publishes a catalog delta: applied here at once, sent to every other worker through
    the deltas topic (both paths, interactions and uploads, publish through it)."""

    def __init__(
        self,
        *,
        catalog: Catalog,
        cache: VectorCache,
        send_delta: Callable[[CatalogDelta], Awaitable[Any]],
    ) -> None:
        self.catalog = catalog
        self.cache = cache
        self._send_delta = send_delta

    async def __call__(self, delta: CatalogDelta) -> None:
        self.catalog.apply(delta)
        self.cache.invalidate(delta.uploads)
        await self._send_delta(delta)


class Pipeline:
    """The steps the agents run, with their collaborators injected."""

    def __init__(
        self,
        *,
        settings: Settings,
        metrics: Metrics,
        users: MutableMapping[str, Any],
        catalog: Catalog,
        publish: CatalogPublisher,
        letters: DeadLetters,
        refresher: Refresher,
        uploader: Uploader,
        send_list: Callable[[str, Recommendation], Awaitable[Any]],
    ) -> None:
        self.s = settings
        self.m = metrics
        self.users = users
        self.catalog = catalog
        self.publish = publish
        self.letters = letters
        self.refresher = refresher
        self.uploader = uploader
        self._send_list = send_list
        self.limits = InputLimits.from_settings(settings)

    # --- the interaction path ------------------------------------------------------------

    async def interactions(self, events: Sequence[Any]) -> None:
        """Fold a batch of interactions; refresh each listener it touched, once."""
        m = self.m
        started = time.perf_counter()
        batch: list[Incoming] = []
        failed: list[Failed] = []
        for e in events:
            if isinstance(e.value, InvalidEvent):
                failed.append(self.invalid("interactions", e))
            else:
                batch.append(Incoming(e.value, e.message.partition, e.message.offset, e))
        if failed:
            await self.letters.dead_letter_many(failed, role="interactions")
        folded = fold_batch(
            batch,
            get_state=self.get_state,
            put_state=self.put_state,
            seq_len=self.s.seq_len,
            session_gap_s=self.s.session_gap_s,
            now_ms=int(time.time() * 1000),
            limits=self.limits,
            known_artists=self.catalog.artists,
        )
        m.events.labels(topic="interactions", outcome="duplicate").inc(folded.duplicates)
        m.events.labels(topic="interactions", outcome="rejected").inc(len(folded.rejected))
        if folded.rejected:  # valid, but its time is implausible or too late to apply
            await self.letters.dead_letter_many(
                [
                    Failed(
                        Source.of(inc.source),
                        reason,
                        OutOfWindow(f"occurred_at {inc.event.occurred_at.isoformat()}"),
                    )
                    for inc, reason in folded.rejected
                ],
                role="interactions",
            )
        m.events.labels(topic="interactions", outcome="ok").inc(
            sum(len(t.events) for t in folded.listeners)
        )
        m.fold_batch.observe(len(events))
        if folded.delta is not None:
            await self.publish(folded.delta)
        m.batch_step_seconds.labels(step="fold").observe(time.perf_counter() - started)
        await self.refresher.refresh(folded.listeners, self._send_list)
        m.batch_step_seconds.labels(step="batch").observe(time.perf_counter() - started)
        m.table_size.labels(table="user-state").set(len(self.users))
        m.table_size.labels(table="track-stats").set(len(self.catalog.plays))

    def get_state(self, uid: str) -> UserState | None:
        # The table holds UserState objects (streams/state_codec.py): no validation here.
        state: UserState | None = self.users.get(uid)
        return state

    def put_state(self, state: UserState, last: Incoming) -> None:
        with routed_as(last.source):
            self.users[state.user_id] = state

    # --- the upload path -----------------------------------------------------------------

    async def uploads(self, events: Sequence[Any]) -> None:
        """Decode, embed on Triton and upsert into Milvus, batching concurrent uploads."""
        items: list[UploadItem] = []
        failed: list[Failed] = []
        for e in events:
            if isinstance(e.value, InvalidEvent):
                failed.append(self.invalid("track-uploads", e))
            else:
                items.append(UploadItem(e.value, Source.of(e)))
        if failed:
            await self.letters.dead_letter_many(failed, role="track-uploads")
        await self.uploader.handle(items)

    # --- shared steps --------------------------------------------------------------------

    def invalid(self, role: str, event: Any) -> Failed:
        """An undecodable (or oversized) message, counted; the caller dead-letters it."""
        bad: InvalidEvent = event.value
        self.m.events.labels(topic=role, outcome=bad.reason).inc()
        return Failed(Source.of(event), bad.reason, InvalidMessage(bad.error))
