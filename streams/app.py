"""The Faust application: the topology of a worker.

    interactions (user) --take a batch--> fold (user-state table, one write per listener)
        --> one catalog delta (track-deltas) --> rank each touched listener once
        (one batched Milvus search) --> recommendations (user)
    track-uploads (track) --> decode --> Triton --> Milvus --> one catalog delta
        (items that may succeed later --> track-uploads.retry --> the same path, when due)
    anything that cannot be processed --> <its topic>.dlq (original bytes, why, where)
    track-deltas (every partition, every worker) --> the worker's catalog

Broker records per interaction: the interaction, at most one state write and one list
(fewer when a listener's events share a batch), plus one delta per batch. The steps are
the pure functions of ``refresh``, ``state``, ``recommender`` and ``fusion``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import faust
from faust.streams import _current_event

from schemas.event_time import InputLimits
from schemas.events import Interaction, Recommendation, TrackUpload
from serving.kafka_security import KafkaSecurity
from streams.catalog import Catalog
from streams.clients import Clients, Deps
from streams.codec import InvalidEvent, PydanticSchema
from streams.deadletter import DeadLetters, Failed, InvalidMessage, OutOfWindow, Source
from streams.ingest import Uploader, UploadItem
from streams.recommender import VectorCache
from streams.refresh import Incoming, Refresher, fold_batch
from streams.spool import Spool
from streams.state import CatalogDelta, UserState

log = logging.getLogger(__name__)

# Table keys and values as JSON: a key reads back from the changelog as the same str.
_JSON_TABLE: faust.Schema = faust.Schema(key_serializer="json", value_serializer="json")


@contextmanager
def _routed_as(event: Any) -> Iterator[None]:
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


def build_app(deps: Deps) -> faust.App:
    """The Faust app with its topics, tables and agents wired to ``deps``."""
    s, m = deps.settings, deps.metrics
    app = faust.App(
        f"{s.topic_prefix}{s.app_id}",
        broker=[f"kafka://{b.strip()}" for b in s.kafka_bootstrap.split(",")],
        broker_credentials=KafkaSecurity.from_settings(s).faust_credentials(),
        store="memory://",
        topic_partitions=s.partitions,
        topic_replication_factor=1,
        # Several workers per machine: Faust's own web server would fight over a port,
        # and our Prometheus endpoint replaces it.
        web_enabled=False,
        # Faust makes `<app id>-data/` in its working directory by default (empty with the
        # memory store); keep it in the run folder, not wherever the worker was started.
        datadir=str(s.run_dir / "faust"),
        broker_session_timeout=10,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_max_batch_size=s.producer_max_batch_bytes,
        producer_linger=s.producer_linger_ms / 1000,
        producer_max_request_size=s.max_record_bytes,
        processing_guarantee=s.processing_guarantee,
    )
    # What producers may send is capped at max_event_bytes (README's contract); what we
    # produce ourselves at max_record_bytes, the producer's own request limit.
    inbound, ours = s.max_event_bytes, s.max_record_bytes
    interactions = app.topic(
        s.topic(s.interactions_topic), schema=PydanticSchema(Interaction, max_bytes=inbound)
    )
    uploads = app.topic(
        s.topic(s.uploads_topic), schema=PydanticSchema(TrackUpload, max_bytes=inbound)
    )
    upload_retries = app.topic(
        s.retry_topic(s.uploads_topic), schema=PydanticSchema(TrackUpload, max_bytes=ours)
    )
    recommendations = app.topic(
        s.topic(s.recommendations_topic), schema=PydanticSchema(Recommendation, max_bytes=ours)
    )
    deltas = app.topic(
        s.topic(s.deltas_topic),
        schema=PydanticSchema(CatalogDelta, max_bytes=ours),
        partitions=s.partitions,
        internal=True,
        # Every worker rebuilds its catalog from this topic's whole history: a broker's
        # time or size retention would make a restarted worker forget old tracks.
        config={"retention.ms": "-1", "retention.bytes": "-1"},
    )
    users = app.Table("user-state", default=None, partitions=s.partitions, schema=_JSON_TABLE)
    clients = Clients(deps)
    catalog = Catalog(ttl_s=s.catalog_lists_ttl_s)
    cache = VectorCache(capacity=s.vector_cache_size)
    refresher = Refresher(deps=deps, clients=clients, catalog=catalog, cache=cache)
    limits = InputLimits.from_settings(s)
    feed = deps.feed_factory(catalog) if deps.feed_factory is not None else None
    feed_ready = feed.caught_up if feed is not None else asyncio.Event()
    if feed is None:
        feed_ready.set()
    background: set[asyncio.Future[None]] = set()

    letters = DeadLetters(
        app=app,
        settings=s,
        metrics=m,
        spool=Spool(folder=s.run_dir / "spool", max_bytes=s.spool_max_bytes),
    )

    def invalid(role: str, event: Any) -> Failed:
        """An undecodable (or oversized) message, counted; the caller dead-letters it."""
        bad: InvalidEvent = event.value
        m.events.labels(topic=role, outcome=bad.reason).inc()
        return Failed(Source.of(event), bad.reason, InvalidMessage(bad.error))

    async def publish(delta: CatalogDelta) -> None:
        catalog.apply(delta)  # this worker at once; the others through the topic
        cache.invalidate(delta.uploads)
        await deltas.send(value=delta)

    def get_state(uid: str) -> UserState | None:
        raw = users.get(uid)
        return UserState.model_validate(raw) if raw else None

    def put_state(state: UserState, last: Incoming) -> None:
        with _routed_as(last.source):
            users[state.user_id] = state.model_dump(mode="json")

    async def send(uid: str, rec: Recommendation) -> None:
        await recommendations.send(key=uid, value=rec)

    @app.agent(interactions, name="on_interactions")
    async def on_interactions(stream: Any) -> None:
        """Fold a batch of interactions; refresh each listener it touched, once."""
        await feed_ready.wait()  # never rank with half a catalog after a restart
        async for events in stream.take_events(s.fold_batch, within=s.fold_wait_s):
            batch: list[Incoming] = []
            failed: list[Failed] = []
            for e in events:
                if isinstance(e.value, InvalidEvent):
                    failed.append(invalid("interactions", e))
                else:
                    batch.append(Incoming(e.value, e.message.partition, e.message.offset, e))
            if failed:
                await letters.dead_letter_many(failed, role="interactions")
            folded = fold_batch(
                batch,
                get_state=get_state,
                put_state=put_state,
                seq_len=s.seq_len,
                session_gap_s=s.session_gap_s,
                now_ms=int(time.time() * 1000),
                limits=limits,
            )
            m.events.labels(topic="interactions", outcome="duplicate").inc(folded.duplicates)
            m.events.labels(topic="interactions", outcome="rejected").inc(len(folded.rejected))
            if folded.rejected:  # valid, but its time is implausible or too late to apply
                await letters.dead_letter_many(
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
                await publish(folded.delta)
            await refresher.refresh(folded.listeners, send)
            m.table_size.labels(table="user-state").set(len(users))
            m.table_size.labels(table="track-stats").set(len(catalog.plays))

    uploader = Uploader(deps=deps, clients=clients, letters=letters, publish=publish)

    async def upload_batch(events: list[Any]) -> None:
        items: list[UploadItem] = []
        failed: list[Failed] = []
        for e in events:
            if isinstance(e.value, InvalidEvent):
                failed.append(invalid("track-uploads", e))
            else:
                items.append(UploadItem(e.value, Source.of(e)))
        if failed:
            await letters.dead_letter_many(failed, role="track-uploads")
        await uploader.handle(items)

    @app.agent(uploads, name="on_upload")
    async def on_upload(stream: Any) -> None:
        """Decode, embed on Triton and upsert into Milvus, batching concurrent uploads."""
        async for events in stream.take_events(s.upload_batch, within=s.upload_batch_wait_s):
            await upload_batch(events)

    @app.agent(upload_retries, name="on_upload_retry")
    async def on_upload_retry(stream: Any) -> None:
        """Uploads that failed for a reason that may pass: again, once due."""
        async for events in stream.take_events(s.upload_batch, within=s.upload_batch_wait_s):
            due_ms = max(Source.of(e).not_before_ms for e in events)
            # Offsets are acked after this returns: a restart re-reads what still waits.
            await asyncio.sleep(max(0.0, due_ms / 1000 - time.time()))
            await upload_batch(events)

    if feed is not None:

        @app.task
        async def _catalog_feed() -> None:
            # Faust creates internal topics it consumes; this one it only produces to.
            await deltas.maybe_declare()
            await feed.run()

    @app.task
    async def _declare_dead_letters() -> None:
        # `resonate up` / `resonate topics` create them; this covers a worker started alone.
        await letters.declare(
            [s.dead_letter_topic(s.interactions_topic), s.dead_letter_topic(s.uploads_topic)]
        )

    @app.on_rebalance_complete.connect  # type: ignore[arg-type]
    async def _ready(app: faust.App, *args: Any, **kwargs: Any) -> None:
        async def when_caught_up() -> None:
            await feed_ready.wait()
            m.set_assigned(True)

        # Not awaited here: the rebalance must complete while the feed catches up.
        background.add(task := asyncio.ensure_future(when_caught_up()))
        task.add_done_callback(background.discard)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def _not_ready(app: faust.App, *args: Any, **kwargs: Any) -> None:
        m.set_assigned(False)

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def _close(app: faust.App, *args: Any, **kwargs: Any) -> None:
        await clients.close()

    return app
