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
the methods of ``streams.pipeline.Pipeline``, which call the pure functions of ``refresh``,
``state``, ``recommender`` and ``fusion``; this module only wires them to Faust.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import faust

from schemas.events import Interaction, Recommendation, TrackUpload
from schemas.settings import Settings
from serving.kafka_security import KafkaSecurity
from streams.candidates import VectorCache
from streams.catalog import Catalog
from streams.clients import Clients, Deps
from streams.codec import PydanticSchema
from streams.deadletter import DeadLetters, Source
from streams.ingest import Uploader
from streams.metrics import Metrics
from streams.pipeline import CatalogPublisher, Pipeline
from streams.refresh import Refresher
from streams.spool import Spool
from streams.state import CatalogDelta, UserState
from streams.state_codec import ModelTableSchema

log = logging.getLogger(__name__)


def build_app(deps: Deps) -> faust.App:
    """The Faust app with its topics, tables and agents wired to ``deps``."""
    s, m = deps.settings, deps.metrics
    app = _faust_app(s)
    topics = _Topics.declare(app, s)
    users = app.Table(
        "user-state",
        default=None,
        partitions=s.partitions,
        # States as objects in the table; JSON only on the changelog (streams/state_codec.py).
        schema=ModelTableSchema(
            UserState,
            on_invalid=lambda _: m.events.labels(topic="user-state", outcome="invalid").inc(),
        ),
    )
    clients = Clients(deps)
    catalog = Catalog(ttl_s=s.catalog_lists_ttl_s)
    cache = VectorCache(capacity=s.vector_cache_size)
    letters = DeadLetters(
        app=app,
        settings=s,
        metrics=m,
        spool=Spool(folder=s.run_dir / "spool", max_bytes=s.spool_max_bytes),
    )

    async def send_delta(delta: CatalogDelta) -> None:
        # Keyed by the catalog's origin: this worker's feed skips what it applied itself.
        await topics.deltas.send(key=catalog.origin, value=delta)

    async def send_list(uid: str, rec: Recommendation) -> None:
        await topics.recommendations.send(key=uid, value=rec)

    publish = CatalogPublisher(catalog=catalog, cache=cache, send_delta=send_delta)
    pipeline = Pipeline(
        settings=s,
        metrics=m,
        users=users,
        catalog=catalog,
        publish=publish,
        letters=letters,
        refresher=Refresher(deps=deps, clients=clients, catalog=catalog, cache=cache),
        uploader=Uploader(deps=deps, clients=clients, letters=letters, publish=publish),
        send_list=send_list,
    )
    feed = deps.feed_factory(catalog) if deps.feed_factory is not None else None
    feed_ready = feed.caught_up if feed is not None else asyncio.Event()
    if feed is None:
        feed_ready.set()
    _agents(app, s, topics, pipeline, feed_ready)
    _tasks(app, s, topics, letters, feed)
    _lifecycle(app, m, clients, feed_ready)
    return app


def _faust_app(s: Settings) -> faust.App:
    return faust.App(
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
        # A batch is one record batch to the broker: never over the record limit that the
        # worker fitted to its topics' max.message.bytes at start.
        producer_max_batch_size=min(s.producer_max_batch_bytes, s.max_record_bytes),
        producer_linger=s.producer_linger_ms / 1000,
        producer_max_request_size=s.max_record_bytes,
        # at_least_once + event-id replay detection: what the kill storms verify. Faust's
        # exactly_once lost plays in a 30-kill storm on Kafka (docs/reliability.md).
        processing_guarantee="at_least_once",
    )


@dataclass(frozen=True)
class _Topics:
    """The worker's topics, declared once (names from ``Settings``)."""

    interactions: Any
    uploads: Any
    upload_retries: Any
    recommendations: Any
    deltas: Any

    @classmethod
    def declare(cls, app: faust.App, s: Settings) -> _Topics:
        # What producers may send is capped at max_event_bytes (README's contract); what we
        # produce ourselves at max_record_bytes, the producer's own request limit.
        inbound, ours = s.max_event_bytes, s.max_record_bytes
        return cls(
            interactions=app.topic(
                s.topic(s.interactions_topic),
                schema=PydanticSchema(Interaction, max_bytes=inbound),
            ),
            uploads=app.topic(
                s.topic(s.uploads_topic), schema=PydanticSchema(TrackUpload, max_bytes=inbound)
            ),
            upload_retries=app.topic(
                s.retry_topic(s.uploads_topic), schema=PydanticSchema(TrackUpload, max_bytes=ours)
            ),
            recommendations=app.topic(
                s.topic(s.recommendations_topic),
                schema=PydanticSchema(Recommendation, max_bytes=ours),
            ),
            deltas=app.topic(
                s.topic(s.deltas_topic),
                schema=PydanticSchema(CatalogDelta, max_bytes=ours),
                partitions=s.partitions,
                internal=True,
                # Every worker rebuilds its catalog from this topic's whole history: a
                # broker's time or size retention would make a restarted worker forget
                # old tracks.
                config={"retention.ms": "-1", "retention.bytes": "-1"},
            ),
        )


def _agents(
    app: faust.App, s: Settings, topics: _Topics, pipeline: Pipeline, feed_ready: asyncio.Event
) -> None:
    """The three agents: each takes a batch and hands it to the pipeline."""

    @app.agent(topics.interactions, name="on_interactions")
    async def on_interactions(stream: Any) -> None:
        await feed_ready.wait()  # never rank with half a catalog after a restart
        async for events in stream.take_events(s.fold_batch, within=s.fold_wait_s):
            await pipeline.interactions(events)

    @app.agent(topics.uploads, name="on_upload")
    async def on_upload(stream: Any) -> None:
        async for events in stream.take_events(s.upload_batch, within=s.upload_batch_wait_s):
            await pipeline.uploads(events)

    @app.agent(topics.upload_retries, name="on_upload_retry")
    async def on_upload_retry(stream: Any) -> None:
        """Uploads that failed for a reason that may pass: again, once due."""
        async for events in stream.take_events(s.upload_batch, within=s.upload_batch_wait_s):
            due_ms = max(Source.of(e).not_before_ms for e in events)
            # Offsets are acked after this returns: a restart re-reads what still waits.
            await asyncio.sleep(max(0.0, due_ms / 1000 - time.time()))
            await pipeline.uploads(events)


def _tasks(
    app: faust.App, s: Settings, topics: _Topics, letters: DeadLetters, feed: Any | None
) -> None:
    """Background tasks: the catalog feed, and dead-letter topics declared at start."""
    if feed is not None:

        @app.task
        async def _catalog_feed() -> None:
            # Faust creates internal topics it consumes; this one it only produces to.
            await topics.deltas.maybe_declare()
            await feed.run()

    @app.task
    async def _declare_dead_letters() -> None:
        # `resonate up` / `resonate topics` create them; this covers a worker started alone.
        await letters.declare(
            [s.dead_letter_topic(s.interactions_topic), s.dead_letter_topic(s.uploads_topic)]
        )


def _lifecycle(app: faust.App, m: Metrics, clients: Clients, feed_ready: asyncio.Event) -> None:
    """Readiness follows the group's assignment and the catalog feed; clients close last."""
    background: set[asyncio.Future[None]] = set()

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
