"""The interaction hot path, step by step: fold a batch, then refresh each listener once.

``fold_batch`` applies a batch of interactions to the listeners' states (one state read
and one state write per listener, one catalog delta for the batch). ``Refresher`` then
ranks every touched listener with the state already in hand: one ``get`` for the track
vectors the worker has not cached, ONE batched Milvus search for all listeners with an
audio taste, the pure ranking on the event loop, and one list per listener that names
every event it answers.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from models.fusion_weights import WeightsSource
from schemas.event_time import InputLimits, Verdict, latency_s
from schemas.events import Interaction, Recommendation
from streams.catalog import Catalog
from streams.clients import Clients, Deps, sequence_candidates
from streams.fusion import FusionWeights
from streams.recommender import (
    Ranked,
    VectorCache,
    audio_candidates,
    audio_hits,
    rank_listener,
    search_limit,
    taste_vectors,
)
from streams.state import CatalogDelta, DeltaBuilder, UserState, apply_interaction

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Incoming:
    """One decoded interaction and where it came from."""

    event: Interaction
    partition: int
    offset: int | None
    source: Any = None  # the framework's event (its partition routes the state write)


@dataclass
class Touched:
    """A listener whose state this batch changed, and the events that changed it."""

    state: UserState
    events: list[Interaction] = field(default_factory=list)


@dataclass(frozen=True)
class Folded:
    """What one batch did: listeners to refresh, the catalog delta, replays seen, and the
    events rejected with their reason (a :class:`~schemas.event_time.Verdict` value:
    ``event-time-too-old``, ``event-time-in-future`` or ``late``), to be dead-lettered.

    A rejected event changes no state, not even the listener's offset: a broker redelivery
    of it is rejected (and dead-lettered) again, so the dead letters are at-least-once and
    their readers go by ``event_id``.
    """

    listeners: list[Touched]
    delta: CatalogDelta | None
    duplicates: int
    rejected: list[tuple[Incoming, str]] = field(default_factory=list)


def fold_batch(
    batch: Sequence[Incoming],
    *,
    get_state: Callable[[str], UserState | None],
    put_state: Callable[[UserState, Incoming], None],
    seq_len: int,
    session_gap_s: float,
    now_ms: int,
    limits: InputLimits,
) -> Folded:
    """Apply a batch in order; write each listener's state once, with its last event.

    ``now_ms`` is the worker's clock, read once per batch by the caller; events it rejects
    change no state and come back in ``Folded.rejected``.
    """
    by_user: dict[str, list[Incoming]] = {}
    for inc in batch:
        by_user.setdefault(inc.event.user_id, []).append(inc)
    builder = DeltaBuilder()
    touched: list[Touched] = []
    duplicates = 0
    rejected: list[tuple[Incoming, str]] = []
    for uid, incs in by_user.items():
        state = get_state(uid) or UserState(user_id=uid)
        t = Touched(state=state)
        last: Incoming | None = None
        for inc in incs:
            before = state
            state, verdict = apply_interaction(
                state, inc.event, seq_len=seq_len, now_ms=now_ms, limits=limits, offset=inc.offset
            )
            if verdict is Verdict.DUPLICATE:
                duplicates += 1
            if verdict.rejected:
                rejected.append((inc, verdict.value))
            if verdict is not Verdict.APPLIED:
                continue
            builder.interaction(before, inc.event, session_gap_s=session_gap_s)
            t.events.append(inc.event)
            last = inc
        if last is not None:
            t.state = state
            put_state(state, last)
            touched.append(t)
    delta = builder.build(f"fold:{uuid.uuid4().hex}") if touched else None
    return Folded(listeners=touched, delta=delta, duplicates=duplicates, rejected=rejected)


class Refresher:
    """Ranks touched listeners and emits their lists (one per listener and batch)."""

    def __init__(
        self, *, deps: Deps, clients: Clients, catalog: Catalog, cache: VectorCache
    ) -> None:
        self.deps = deps
        self.clients = clients
        self.catalog = catalog
        self.cache = cache
        self.weights = deps.weights or WeightsSource(dir=deps.settings.fusion_weights_dir)
        self.limits = InputLimits.from_settings(deps.settings)
        self._mixes: tuple[str, FusionWeights, FusionWeights] | None = None

    def mixes(self) -> tuple[str, FusionWeights, FusionWeights]:
        """(artifact version, mix without / with a sequence model), from the artifact in force
        (a newer version is picked up without a restart)."""
        art, version = self.weights.current()
        if self._mixes is None or self._mixes[0] != version:
            self._mixes = (
                version,
                FusionWeights.from_mix(art.base.weights),
                FusionWeights.from_mix(art.sequence.weights),
            )
            self.deps.metrics.fusion_weights.clear()
            self.deps.metrics.fusion_weights.labels(version=version).set(1)
        return self._mixes

    async def refresh(
        self, touched: Sequence[Touched], send: Callable[[str, Recommendation], Awaitable[Any]]
    ) -> None:
        """Rank and emit; a listener whose ranking fails is counted, the others go on."""
        if not touched:
            return
        s, m = self.deps.settings, self.deps.metrics
        states = [t.state for t in touched]
        sequences = await self._sequences(states)
        hits = await self._audio_hits(states)
        now_ms = int(time.time() * 1000)
        version, base, with_seq = self.mixes()
        popular, fresh = self.catalog.lists(
            top_popular=2 * s.top_k,
            top_fresh=s.top_k,
            now_ms=now_ms,
            fresh_window_ms=base.fresh_window_ms,
        )
        for t in touched:
            uid = t.state.user_id
            seq, served = sequences.get(uid, ([], ""))
            try:
                ranked = rank_listener(
                    t.state,
                    hits.get(uid, []),
                    cache=self.cache,
                    catalog=self.catalog,
                    popular=popular,
                    fresh=fresh,
                    k=s.top_k,
                    max_per_artist=s.max_per_artist,
                    now_ms=now_ms,
                    weights=with_seq if seq else base,
                    sequence=seq,
                )
            except Exception:  # one listener's failure must not stop everyone's lists
                m.events.labels(topic="refresh", outcome="error").inc()
                log.exception("ranking failed for user %s", uid)
                continue
            await send(uid, self._message(t, ranked, version, served if seq else ""))
            m.recommendations.labels(source=ranked.source).inc()
            done_ms = int(time.time() * 1000)
            for ev in t.events:
                # Folding rejected events outside the window; guard anyway: one wrong clock
                # would swamp the histogram's sum.
                at_ms = int(ev.occurred_at.timestamp() * 1000)
                lat = latency_s(at_ms, now_ms=done_ms, limits=self.limits)
                if lat is not None:
                    m.event_to_recommendation.observe(lat)

    def _message(self, t: Touched, ranked: Ranked, weights: str, served: str) -> Recommendation:
        # Every artifact behind the list: the pipeline, the audio encoder (its card), the
        # fusion weights, the sequence model.
        base = f"{self.deps.settings.model_version}+{self.deps.card.version}+{weights}"
        return Recommendation(
            user_id=t.state.user_id,
            generated_at=datetime.now(UTC),
            source_event_id=t.events[-1].event_id,
            event_ids=[e.event_id for e in t.events],
            model_version=f"{base}+{served}" if served else base,
            items=ranked.items,
        )

    async def _sequences(
        self, states: Sequence[UserState]
    ) -> dict[str, tuple[list[tuple[str, float]], str]]:
        if self.deps.user_encoder_factory is None:
            return {}
        got = await asyncio.gather(
            *(sequence_candidates(st, self.deps, self.clients) for st in states)
        )
        return {st.user_id: g for st, g in zip(states, got, strict=True)}

    async def _fill_cache(self, store: Any, ids: list[str]) -> None:
        """Ask Milvus (one ``get``) for the vectors of ``ids`` the cache has never seen."""
        missing = self.cache.missing(ids)
        if missing:
            t0 = time.perf_counter()
            loop = asyncio.get_running_loop()
            rows = await loop.run_in_executor(self.clients.milvus_pool, store.get, missing)
            self.deps.metrics.milvus_seconds.labels(op="get").observe(time.perf_counter() - t0)
            self.cache.fill(missing, rows)

    async def _audio_hits(self, states: Sequence[UserState]) -> dict[str, list[Any]]:
        """User id -> audio neighbours (recent tracks dropped); {} while Milvus is away."""
        m = self.deps.metrics
        loop = asyncio.get_running_loop()
        try:
            store = await self.clients.store()
            await self._fill_cache(store, [h.track_id for st in states for h in st.recent])
            vectors = taste_vectors(states, self.cache)
            if not vectors:
                return {}
            by_user = {st.user_id: st for st in states if st.user_id in vectors}
            limit = max(search_limit(self.deps.settings.top_k, st) for st in by_user.values())
            t0 = time.perf_counter()
            results = await loop.run_in_executor(
                self.clients.milvus_pool,
                lambda: store.search_many(list(vectors.values()), k=limit),
            )
            m.milvus_seconds.labels(op="search").observe(time.perf_counter() - t0)
            # Vectors of hits (for "sounds like X") come from the cache: a catalog's hits
            # repeat, so asking the search for every hit's vector would ship the same
            # floats again and again.
            await self._fill_cache(store, [t for found in results for t, _ in found])
        except Exception as exc:  # Milvus away: co-plays and popularity still answer
            m.events.labels(topic="refresh", outcome="no-audio").inc(len(states))
            log.warning("audio candidates unavailable (%s); ranking without them", exc)
            return {}
        out: dict[str, list[Any]] = {}
        for uid, found in zip(vectors, results, strict=True):
            recent = {h.track_id for h in by_user[uid].recent}
            kept = [h for h in audio_hits(found, self.cache) if h.track_id not in recent]
            out[uid] = kept[: audio_candidates(self.deps.settings.top_k)]
        return out
