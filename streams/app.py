"""The Faust application: interactions, uploads, track-signals and fusion agents.

Each agent is a thin loop around the pure functions in ``state``, ``fusion`` and
``audio``. Topology (every topic keyed as noted, same partition count, so the
fusion agent reads the user-state table of its own partitions):

    interactions (user) --> user-state table --> refresh (user) --> fusion --> recommendations
                       \\--> track-signals (track) --> track-stats global table --/
    track-uploads (track) --> Triton --> Milvus --/   (+ upload signal)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import faust
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from models.spec import EncoderCard
from schemas.events import Interaction, Recommendation, TrackUpload
from schemas.settings import Settings
from serving.milvus_store import TrackRow, TrackStore
from serving.triton_client import AudioEncoderClient
from serving.user_encoder_client import UserEncoderClient
from streams.audio import AudioRejected, pool_track, prepare_audio, resolve_audio_uri
from streams.codec import InvalidEvent, PydanticSchema
from streams.fusion import DEFAULT_WEIGHTS, SEQUENCE_WEIGHTS
from streams.metrics import Metrics
from streams.recommender import recommend, snapshot
from streams.state import (
    TrackSignal,
    TrackStats,
    UserState,
    apply_interaction,
    apply_signal,
    signals_for,
)

log = logging.getLogger(__name__)


class RefreshRequest(BaseModel):
    """Internal: recompute this user's list (topic ``refresh``, keyed by user)."""

    model_config = ConfigDict(frozen=True)
    user_id: str = Field(description="Listener to refresh.")
    source_event_id: str | None = Field(default=None, description="Triggering event.")
    occurred_at_ms: int | None = Field(default=None, description="Its time, for latency.")


@dataclass(frozen=True)
class Deps:
    """Collaborators the agents need, injected so tests and production differ only here."""

    settings: Settings
    card: EncoderCard
    metrics: Metrics
    store_factory: Callable[[], TrackStore]
    encoder_factory: Callable[[], AudioEncoderClient]
    # Set when a trained user (sequence) encoder is served; None = training-free fusion only.
    user_encoder_factory: Callable[[], UserEncoderClient] | None = None


class _Lazy:
    """Clients opened once per worker, on the worker's own event loop, on first use."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        self._lock = asyncio.Lock()
        self._store: TrackStore | None = None
        self._encoder: AudioEncoderClient | None = None
        self._user_encoder: UserEncoderClient | None = None
        self._user_lock = asyncio.Lock()  # its own: a slow readiness wait must not block Milvus
        self.user_encoder_down_until = 0.0  # monotonic; after a failure, skip calls until then
        # Milvus calls are blocking; one thread keeps them ordered and off the loop.
        self.milvus_pool = ThreadPoolExecutor(1, thread_name_prefix="milvus")
        self.decode_pool = ThreadPoolExecutor(2, thread_name_prefix="decode")

    async def store(self) -> TrackStore:
        async with self._lock:
            if self._store is None:
                loop = asyncio.get_running_loop()
                store = self.deps.store_factory()
                await loop.run_in_executor(self.milvus_pool, store.__enter__)
                await loop.run_in_executor(self.milvus_pool, store.ensure_collection)
                self._store = store
            return self._store

    async def encoder(self) -> AudioEncoderClient:
        async with self._lock:
            if self._encoder is None:
                enc = self.deps.encoder_factory()
                await enc.__aenter__()
                self._encoder = enc
            return self._encoder

    async def user_encoder(self) -> UserEncoderClient:
        factory = self.deps.user_encoder_factory
        if factory is None:
            raise RuntimeError("no user encoder configured")
        async with self._user_lock:
            if self._user_encoder is None:
                client = factory()
                await client.__aenter__()
                self._user_encoder = client
            return self._user_encoder

    async def close(self) -> None:
        if self._user_encoder is not None:
            await self._user_encoder.__aexit__(None, None, None)
        if self._encoder is not None:
            await self._encoder.__aexit__(None, None, None)
        if self._store is not None:
            self._store.__exit__(None, None, None)
        self.milvus_pool.shutdown(wait=False)
        self.decode_pool.shutdown(wait=False)


# Table keys and values as JSON: a key reads back from the changelog as the same str.
_JSON_TABLE: faust.Schema = faust.Schema(key_serializer="json", value_serializer="json")


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def build_app(deps: Deps) -> faust.App:
    """The Faust app with its topics, tables and agents wired to ``deps``."""
    s = deps.settings
    m = deps.metrics
    app = faust.App(
        f"{s.topic_prefix}{s.app_id}",
        broker=[f"kafka://{b.strip()}" for b in s.kafka_bootstrap.split(",")],
        store="memory://",
        topic_partitions=s.partitions,
        topic_replication_factor=1,
        # Several workers per machine: Faust's own web server would fight over a port,
        # and our Prometheus endpoint replaces it.
        web_enabled=False,
        broker_session_timeout=10,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_max_batch_size=s.producer_max_batch_bytes,
    )
    interactions = app.topic(s.topic(s.interactions_topic), schema=PydanticSchema(Interaction))
    uploads = app.topic(s.topic(s.uploads_topic), schema=PydanticSchema(TrackUpload))
    recommendations = app.topic(
        s.topic(s.recommendations_topic), schema=PydanticSchema(Recommendation)
    )
    signals = app.topic(
        s.topic("track-signals"),
        schema=PydanticSchema(TrackSignal),
        partitions=s.partitions,
        internal=True,
    )
    refresh = app.topic(
        s.topic("refresh"),
        schema=PydanticSchema(RefreshRequest),
        partitions=s.partitions,
        internal=True,
    )
    users = app.Table("user-state", default=None, partitions=s.partitions, schema=_JSON_TABLE)
    tracks = app.GlobalTable(
        "track-stats",
        default=None,
        partitions=s.partitions,
        schema=_JSON_TABLE,
        synchronize_all_active_partitions=True,
    )
    lazy = _Lazy(deps)
    catalog = _CatalogCache()

    def bad(topic: str, ev: InvalidEvent) -> None:
        m.events.labels(topic=topic, outcome="invalid").inc()
        log.warning("invalid event on %s: %s (%r)", topic, ev.error, ev.raw[:200])

    @app.agent(interactions, name="on_interaction")
    async def on_interaction(stream: Any) -> None:
        """Fold an interaction into the user's state; fan out signals and a refresh."""
        async for ev in stream:
            if isinstance(ev, InvalidEvent):
                bad("interactions", ev)
                continue
            raw = users.get(ev.user_id)
            before = UserState.model_validate(raw) if raw else UserState(user_id=ev.user_id)
            after, new = apply_interaction(before, ev, seq_len=s.seq_len)
            if not new:
                m.events.labels(topic="interactions", outcome="duplicate").inc()
                continue
            users[ev.user_id] = after.model_dump(mode="json")
            for sig in signals_for(before, ev, session_gap_s=s.session_gap_s):
                await signals.send(key=sig.track_id, value=sig)
            await refresh.send(
                key=ev.user_id,
                value=RefreshRequest(
                    user_id=ev.user_id,
                    source_event_id=ev.event_id,
                    occurred_at_ms=_ms(ev.occurred_at),
                ),
            )
            m.events.labels(topic="interactions", outcome="ok").inc()
            m.table_size.labels(table="user-state").set(len(users))

    @app.agent(signals, name="on_signal")
    async def on_signal(stream: Any) -> None:
        """Count plays, skips, co-plays and uploads per track (collaborative signal)."""
        async for sig in stream:
            if isinstance(sig, InvalidEvent):
                bad("track-signals", sig)
                continue
            raw = tracks.get(sig.track_id)
            stats, new = apply_signal(TrackStats.model_validate(raw) if raw else None, sig)
            if new:
                tracks[sig.track_id] = stats.model_dump(mode="json")
            m.table_size.labels(table="track-stats").set(len(tracks))

    @app.agent(uploads, name="on_upload")
    async def on_upload(stream: Any) -> None:
        """Decode, embed on Triton and upsert into Milvus, batching concurrent uploads."""
        async for batch in stream.take(s.upload_batch, within=s.upload_batch_wait_s):
            valid: list[TrackUpload] = []
            for ev in batch:
                if isinstance(ev, InvalidEvent):
                    bad("track-uploads", ev)
                else:
                    valid.append(ev)
            if valid:
                await _ingest(valid, deps, lazy, signals)

    @app.agent(refresh, name="on_refresh")
    async def on_refresh(stream: Any) -> None:
        """Recompute and emit top-K for refreshed users (a burst for one user counts once)."""
        async for batch in stream.take(64, within=0.02):
            latest: dict[str, RefreshRequest] = {}
            for req in batch:
                if not isinstance(req, InvalidEvent):
                    latest[req.user_id] = req
            for req in latest.values():
                try:
                    await _refresh_one(req, deps, lazy, users, tracks, catalog, recommendations)
                except Exception:  # one user's failure must not stop everyone's refreshes
                    m.events.labels(topic="refresh", outcome="error").inc()
                    log.exception("refresh failed for user %s", req.user_id)

    @app.on_rebalance_complete.connect  # type: ignore[arg-type]
    async def _ready(app: faust.App, *args: Any, **kwargs: Any) -> None:
        m.ready.set(1)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def _not_ready(app: faust.App, *args: Any, **kwargs: Any) -> None:
        m.ready.set(0)

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def _close(app: faust.App, *args: Any, **kwargs: Any) -> None:
        await lazy.close()

    return app


class _CatalogCache:
    """Popular and fresh tracks, rescanned from the global table at most once a second."""

    def __init__(self, ttl_s: float = 1.0) -> None:
        self.ttl_s = ttl_s
        self._at = 0.0
        self._stats: dict[str, TrackStats] = {}

    def stats(self, table: Any) -> dict[str, TrackStats]:
        now = time.monotonic()
        if now - self._at > self.ttl_s:
            self._stats = {
                (k.decode() if isinstance(k, bytes) else str(k)): TrackStats.model_validate(v)
                for k, v in list(table.items())
                if v
            }
            self._at = now
        return self._stats


async def _refresh_one(
    req: RefreshRequest,
    deps: Deps,
    lazy: _Lazy,
    users: Any,
    tracks: Any,
    catalog: _CatalogCache,
    out: Any,
) -> None:
    s, m = deps.settings, deps.metrics
    raw = users.get(req.user_id)
    state = UserState.model_validate(raw) if raw else UserState(user_id=req.user_id)
    history = [h.track_id for h in state.recent]
    stats = dict(catalog.stats(tracks))
    # The listener's own tracks must be current, not a second old: read them directly.
    for t in history:
        if (v := tracks.get(t)) is not None:
            stats[t] = TrackStats.model_validate(v)
    snap = snapshot(
        stats, history, top_popular=4 * s.top_k, top_fresh=s.top_k, now_ms=int(time.time() * 1000)
    )
    sequence, served = await _sequence_candidates(state, deps, lazy)
    weights = SEQUENCE_WEIGHTS if sequence else DEFAULT_WEIGHTS
    store = await lazy.store()
    loop = asyncio.get_running_loop()
    ranked = await loop.run_in_executor(
        lazy.milvus_pool,
        lambda: recommend(
            state,
            snap,
            store=store,
            k=s.top_k,
            max_per_artist=s.max_per_artist,
            metrics=m,
            weights=weights,
            sequence=sequence,
        ),
    )
    rec = Recommendation(
        user_id=req.user_id,
        generated_at=datetime.now(UTC),
        source_event_id=req.source_event_id,
        model_version=f"{s.model_version}+{served}" if sequence else s.model_version,
        items=ranked.items,
    )
    await out.send(key=req.user_id, value=rec)
    m.recommendations.labels(source=ranked.source).inc()
    if req.occurred_at_ms is not None:
        m.event_to_recommendation.observe(max(0.0, time.time() - req.occurred_at_ms / 1000))


# After a failed user-encoder call, refreshes skip it (training-free fusion) this long.
_USER_ENCODER_BACKOFF_S = 5.0


async def _sequence_candidates(
    state: UserState, deps: Deps, lazy: _Lazy
) -> tuple[list[tuple[str, float]], str]:
    """The served sequence model's next tracks for the listener's positive history, and its
    version; ``([], "")`` when none is configured, the history is empty, or the call fails
    (logged and counted: the refresh goes on without it)."""
    if deps.user_encoder_factory is None:
        return [], ""
    history = [h.track_id for h in state.positives()]
    if not history:
        return [], ""
    m = deps.metrics
    if time.monotonic() < lazy.user_encoder_down_until:
        m.user_encoder_calls.labels(outcome="skipped").inc()
        return [], ""
    t0 = time.perf_counter()
    try:
        client = await lazy.user_encoder()
        items, version = await client.recommend(history, n=max(4 * deps.settings.top_k, 50))
    except Exception as exc:  # any failure: fall back, never drop the refresh
        lazy.user_encoder_down_until = time.monotonic() + _USER_ENCODER_BACKOFF_S
        m.user_encoder_calls.labels(outcome="error").inc()
        log.warning("user encoder failed (%s); training-free fusion for now", exc)
        return [], ""
    m.user_encoder_calls.labels(outcome="ok").inc()
    m.user_encoder_seconds.observe(time.perf_counter() - t0)
    return items, version


async def _ingest(valid: list[TrackUpload], deps: Deps, lazy: _Lazy, signals: Any) -> None:
    s, m = deps.settings, deps.metrics
    loop = asyncio.get_running_loop()

    async def prep(ev: TrackUpload) -> Any:
        try:
            loc = resolve_audio_uri(ev.audio_uri, roots=s.audio_roots, hosts=s.audio_hosts)
            return await loop.run_in_executor(
                lazy.decode_pool,
                lambda: prepare_audio(
                    loc, spec=deps.card.frontend, max_seconds=s.max_audio_s, timeout_s=s.timeout_s
                ),
            )
        except AudioRejected as exc:
            m.events.labels(topic="track-uploads", outcome="rejected").inc()
            log.warning("upload %s (%s) rejected: %s", ev.event_id, ev.track_id, exc)
            return None

    inputs = await asyncio.gather(*(prep(ev) for ev in valid))
    ok = [(ev, a) for ev, a in zip(valid, inputs, strict=True) if a is not None]
    if not ok:
        return
    try:
        encoder = await lazy.encoder()
        t0 = time.perf_counter()
        emb, tags = await encoder.embed(np.concatenate([a.patches for _, a in ok]))
        m.triton_seconds.observe(time.perf_counter() - t0)
        rows: list[TrackRow] = []
        at = 0
        for ev, a in ok:
            n = a.patches.shape[0]
            vec, top = pool_track(emb[at : at + n], tags[at : at + n], deps.card.tag_names)
            at += n
            rows.append(
                TrackRow(
                    track_id=ev.track_id,
                    embedding=vec,
                    artist_id=ev.artist_id or "",
                    genre=ev.genre or "",
                    release_date=ev.release_date.isoformat() if ev.release_date else "",
                    uploaded_at_ms=_ms(ev.uploaded_at),
                    top_tags=top,
                    model_version=deps.card.version,
                )
            )
        store = await lazy.store()
        t0 = time.perf_counter()
        await loop.run_in_executor(lazy.milvus_pool, store.upsert, rows)
        m.milvus_seconds.labels(op="upsert").observe(time.perf_counter() - t0)
    except Exception:  # Triton/Milvus down: count, log, keep the worker alive
        m.events.labels(topic="track-uploads", outcome="error").inc(len(ok))
        log.exception("embedding or storing %d uploads failed", len(ok))
        return
    now = time.time()
    for ev, _ in ok:
        m.upload_to_searchable.observe(max(0.0, now - ev.uploaded_at.timestamp()))
        m.events.labels(topic="track-uploads", outcome="ok").inc()
        await signals.send(
            key=ev.track_id,
            value=TrackSignal(
                signal_id=f"{ev.event_id}:upload",
                track_id=ev.track_id,
                kind="upload",
                artist_id=ev.artist_id,
                at_ms=_ms(ev.uploaded_at),
            ),
        )
