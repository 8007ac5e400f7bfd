"""The upload path: decode (librosa) -> log-mel patches -> Triton -> Milvus -> catalog delta.

One batch of uploads is decoded in parallel threads, embedded in ONE Triton call and
upserted in ONE Milvus call; each track that became searchable is announced to every
worker's catalog (artist, upload time) in one delta for the batch.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime

import numpy as np

from schemas.events import TrackUpload
from serving.milvus_store import TrackRow
from streams.audio import (
    AudioInput,
    AudioRejected,
    AudioUnavailable,
    policy_from_settings,
    pool_track,
    prepare_audio,
    resolve_audio_uri,
)
from streams.clients import Clients, Deps
from streams.state import CatalogDelta, DeltaBuilder, UploadInfo

log = logging.getLogger(__name__)


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


async def _prepare(ev: TrackUpload, deps: Deps, clients: Clients) -> AudioInput | None:
    """Model input of one upload, or None when it is rejected (counted and logged)."""
    s, m = deps.settings, deps.metrics
    loop = asyncio.get_running_loop()
    try:
        policy = policy_from_settings(s)
        loc = resolve_audio_uri(ev.audio_uri, policy=policy)
        return await loop.run_in_executor(
            clients.decode_pool,
            lambda: prepare_audio(
                loc, spec=deps.card.frontend, max_seconds=s.max_audio_s, policy=policy
            ),
        )
    except AudioRejected as exc:
        m.events.labels(topic="track-uploads", outcome="rejected").inc()
        log.warning("upload %s (%s) rejected (%s): %s", ev.event_id, ev.track_id, exc.reason, exc)
        return None
    except AudioUnavailable as exc:  # transient (worth a retry): counted as an error for now
        m.events.labels(topic="track-uploads", outcome="error").inc()
        log.warning(
            "upload %s (%s) unavailable (%s): %s", ev.event_id, ev.track_id, exc.reason, exc
        )
        return None


def _rows(
    ok: list[tuple[TrackUpload, AudioInput]], emb: np.ndarray, tags: np.ndarray, deps: Deps
) -> list[TrackRow]:
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
                title=ev.title or "",
            )
        )
    return rows


async def ingest(
    valid: list[TrackUpload],
    deps: Deps,
    clients: Clients,
    publish: Callable[[CatalogDelta], Awaitable[None]],
) -> None:
    """Embed and store one batch of valid uploads; announce the stored ones."""
    m = deps.metrics
    loop = asyncio.get_running_loop()
    inputs = await asyncio.gather(*(_prepare(ev, deps, clients) for ev in valid))
    ok = [(ev, a) for ev, a in zip(valid, inputs, strict=True) if a is not None]
    if not ok:
        return
    try:
        encoder = await clients.encoder()
        t0 = time.perf_counter()
        emb, tags = await encoder.embed(np.concatenate([a.patches for _, a in ok]))
        m.triton_seconds.observe(time.perf_counter() - t0)
        rows = _rows(ok, emb, tags, deps)
        store = await clients.store()
        t0 = time.perf_counter()
        await loop.run_in_executor(clients.milvus_pool, store.upsert, rows)
        m.milvus_seconds.labels(op="upsert").observe(time.perf_counter() - t0)
    except Exception:  # Triton/Milvus down: count, log, keep the worker alive
        m.events.labels(topic="track-uploads", outcome="error").inc(len(ok))
        log.exception("embedding or storing %d uploads failed", len(ok))
        return
    now = time.time()
    delta = DeltaBuilder()
    for ev, _ in ok:
        m.upload_to_searchable.observe(max(0.0, now - ev.uploaded_at.timestamp()))
        m.events.labels(topic="track-uploads", outcome="ok").inc()
        delta.upload(
            ev.track_id,
            UploadInfo(artist_id=ev.artist_id, uploaded_at_ms=_ms(ev.uploaded_at), title=ev.title),
        )
    await publish(delta.build(f"upload:{uuid.uuid4().hex}"))
