"""The upload path: decode (librosa) -> log-mel patches -> Triton -> Milvus -> catalog delta.

Each stored track carries its genre predicted from the tags Triton returns beside the
embedding (``models.genre``), next to the platform's own ``genre``, which is kept as given.

One batch of uploads is decoded in parallel threads, embedded in ONE Triton call and
upserted in ONE Milvus call; each track that became searchable is announced to every
worker's catalog (artist, upload time) in one delta for the batch.

Failures, by whose fault they are (docs/reliability.md):

- **the item's, for good** (audio not allowed, missing, undecodable, a field too long):
  dead-lettered at once, with the reason;
- **the item's, maybe for now** (its audio host is down or slow, or Triton/Milvus reject
  this one item while they serve others): sent to the retry topic with backoff, dead-
  lettered after ``upload_max_attempts``;
- **a dependency's** (Triton or Milvus down): the batch waits in place, probing with
  backoff, and goes on when they are back. Its offsets are not committed meanwhile, so a
  worker restart resumes it. Moving such uploads to a retry topic would only move every
  upload there, since all of them would fail the same way.

One bad item never takes its batch down: when a batch fails while Triton and Milvus
answer their health checks, its items are stored one by one and only the failing one is
set aside.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from models.genre import track_genre
from schemas.event_time import InputLimits, latency_s, upload_time_ms
from schemas.events import TrackUpload
from serving.milvus_schema import TrackRow
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
from streams.deadletter import DeadLetters, Failed, Source
from streams.state import CatalogDelta, DeltaBuilder, UploadInfo

log = logging.getLogger(__name__)

ROLE = "track-uploads"
PROBE_TIMEOUT_S = 5.0  # a health probe of Triton or Milvus; a hung one counts as down


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


@dataclass(frozen=True)
class UploadItem:
    """One valid upload and the message it came in (for retries and dead letters)."""

    event: TrackUpload
    source: Source


def _rows(
    ok: Sequence[tuple[UploadItem, AudioInput]],
    emb: np.ndarray,
    tags: np.ndarray,
    deps: Deps,
    now_ms: int,
) -> list[TrackRow]:
    rows: list[TrackRow] = []
    at = 0
    for it, a in ok:
        ev = it.event
        n = a.patches.shape[0]
        vec, top = pool_track(emb[at : at + n], tags[at : at + n], deps.card.tag_names)
        predicted = track_genre(tags[at : at + n], deps.card.tag_names)
        at += n
        rows.append(
            TrackRow(
                track_id=ev.track_id,
                embedding=vec,
                artist_id=ev.artist_id or "",
                genre=ev.genre or "",
                release_date=ev.release_date.isoformat() if ev.release_date else "",
                uploaded_at_ms=upload_time_ms(_ms(ev.uploaded_at), now_ms=now_ms),
                top_tags=top,
                model_version=deps.card.version,
                title=ev.title or "",
                audio_genre=predicted.label,
                audio_genre_confidence=predicted.confidence,
            )
        )
    return rows


class Uploader:
    """Takes batches of valid uploads to searchable tracks; every item ends stored,
    retried later or dead-lettered."""

    def __init__(
        self,
        *,
        deps: Deps,
        clients: Clients,
        letters: DeadLetters,
        publish: Callable[[CatalogDelta], Awaitable[None]],
    ) -> None:
        self.deps = deps
        self.clients = clients
        self.letters = letters
        self.publish = publish
        self.policy = policy_from_settings(deps.settings)
        self.limits = InputLimits.from_settings(deps.settings)

    async def handle(self, items: Sequence[UploadItem]) -> None:
        """Decode, embed, store and announce ``items``; returns once each has an outcome."""
        now_ms = int(time.time() * 1000)  # a future upload date is clamped to this
        inputs = await asyncio.gather(*(self._prepare(it) for it in items))
        ok = [(it, a) for it, a in zip(items, inputs, strict=True) if a is not None]
        stored = await self._store(ok, now_ms)
        if stored:
            await self._announce(stored, now_ms)

    async def _prepare(self, it: UploadItem) -> AudioInput | None:
        """Model input of one upload, or None once it is set aside (retry or dead letter)."""
        s = self.deps.settings
        loop = asyncio.get_running_loop()
        try:
            loc = resolve_audio_uri(it.event.audio_uri, policy=self.policy)
            return await loop.run_in_executor(
                self.clients.decode_pool,
                lambda: prepare_audio(
                    loc, spec=self.deps.card.frontend, max_seconds=s.max_audio_s, policy=self.policy
                ),
            )
        except AudioRejected as exc:  # for good: not allowed, missing, undecodable...
            await self._give_up(it, f"audio-{exc.reason}", exc)
        except AudioUnavailable as exc:  # the audio host, maybe for now
            await self._again(it, f"audio-{exc.reason}", exc)
        except Exception as exc:  # noqa: BLE001 - anything else: this item, not the batch
            await self._give_up(it, "audio-error", exc)
        return None

    async def _store(
        self, ok: Sequence[tuple[UploadItem, AudioInput]], now_ms: int
    ) -> list[UploadItem]:
        """Embed and upsert ``ok``; wait out outages; isolate items that fail alone."""
        if not ok:
            return []
        s = self.deps.settings
        wait = s.retry_backoff_s
        waiting = self.deps.metrics.waiting.labels(on="dependency")
        while True:
            try:
                await self._embed_and_upsert(ok, now_ms)
                waiting.set(0)
                return [it for it, _ in ok]
            except Exception as exc:  # noqa: BLE001 - sorted out below
                error: Exception = exc
            down = await self._dependency_down()
            if down is None:
                waiting.set(0)
                break  # Triton and Milvus answer: this batch is at fault
            self.deps.metrics.dependency_up.labels(dependency=down).set(0)
            waiting.set(1)
            log.warning(
                "%s is down (%s); %d uploads wait, next try in %.1f s", down, error, len(ok), wait
            )
            await asyncio.sleep(wait)
            wait = min(wait * 2, s.retry_backoff_max_s)
        if len(ok) > 1:
            stored: list[UploadItem] = []
            for pair in ok:
                stored += await self._store([pair], now_ms)
            return stored
        it = ok[0][0]
        if isinstance(error, ValueError):  # the row itself: a field too long, a bad vector
            await self._give_up(it, "invalid-row", error)
        else:
            await self._again(it, "embed-or-store", error)
        return []

    async def _embed_and_upsert(
        self, ok: Sequence[tuple[UploadItem, AudioInput]], now_ms: int
    ) -> None:
        m = self.deps.metrics
        encoder = await self.clients.encoder()
        t0 = time.perf_counter()
        emb, tags = await encoder.embed(np.concatenate([a.patches for _, a in ok]))
        m.triton_seconds.observe(time.perf_counter() - t0)
        m.dependency_up.labels(dependency="triton").set(1)
        rows = _rows(ok, emb, tags, self.deps, now_ms)
        store = await self.clients.store()
        t0 = time.perf_counter()
        await asyncio.get_running_loop().run_in_executor(
            self.clients.milvus_pool, store.upsert, rows
        )
        m.milvus_seconds.labels(op="upsert").observe(time.perf_counter() - t0)
        m.dependency_up.labels(dependency="milvus").set(1)

    async def _dependency_down(self) -> str | None:
        """ "triton" or "milvus" if it does not answer its health check now, else None."""
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                encoder = await self.clients.encoder()
                if not await encoder.ready():
                    return "triton"
        except Exception:  # noqa: BLE001 - unreachable, timed out, not ready: down
            return "triton"
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                store = await self.clients.store()
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(self.clients.milvus_pool, store.exists)
        except Exception:  # noqa: BLE001
            return "milvus"
        return None

    async def _give_up(self, it: UploadItem, reason: str, error: BaseException) -> None:
        self.deps.metrics.events.labels(topic=ROLE, outcome="dead-lettered").inc()
        attempts = it.source.attempts + 1
        await self.letters.dead_letter_many([Failed(it.source, reason, error, attempts)], role=ROLE)

    async def _again(self, it: UploadItem, reason: str, error: BaseException) -> None:
        """Retry later, or dead-letter once the attempts are used up."""
        attempts = it.source.attempts + 1
        if attempts >= self.deps.settings.upload_max_attempts:
            await self._give_up(it, reason, error)
            return
        self.deps.metrics.events.labels(topic=ROLE, outcome="retry").inc()
        await self.letters.retry_later(
            it.source, role=ROLE, reason=reason, error=error, attempts=attempts
        )

    async def _announce(self, stored: Sequence[UploadItem], now_ms: int) -> None:
        m = self.deps.metrics
        done_ms = int(time.time() * 1000)
        delta = DeltaBuilder(known_artists={})  # uploads carry their artist in UploadInfo
        for it in stored:
            ev = it.event
            # Latency only for plausible upload times: a wrong clock is not a slow pipeline.
            lat = latency_s(_ms(ev.uploaded_at), now_ms=done_ms, limits=self.limits)
            if lat is not None:
                m.upload_to_searchable.observe(lat)
            m.events.labels(topic=ROLE, outcome="ok").inc()
            at_ms = upload_time_ms(_ms(ev.uploaded_at), now_ms=now_ms)
            delta.upload(
                ev.track_id,
                UploadInfo(artist_id=ev.artist_id, uploaded_at_ms=at_ms, title=ev.title),
            )
        await self.publish(delta.build(f"upload:{uuid.uuid4().hex}"))
