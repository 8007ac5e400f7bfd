"""Refresh: the lists of every listener a fold batch touched, with the state in hand.

One ``get`` for the track vectors the worker has not cached, ONE batched Milvus search for
all listeners with an audio taste, each listener's candidates (:mod:`streams.candidates`),
ONE ranking pass over the batch (:mod:`streams.rank`), and one list per listener that names
every event it answers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from models.fusion_weights import WeightsSource
from schemas.event_time import InputLimits, latency_s
from schemas.events import ListKind, Recommendation, RecommendedItem
from streams.candidates import (
    VectorCache,
    audio_candidates,
    audio_hits,
    gather_pool,
    pool_source,
    search_limit,
    taste_vectors,
)
from streams.catalog import Catalog
from streams.clients import Clients, Deps, sequence_candidates
from streams.fold import Touched
from streams.fusion import FusionWeights
from streams.lists import kind_pool
from streams.rank import Pool, rank_pools
from streams.state import UserState

log = logging.getLogger(__name__)


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
        """(artifact version, weights without / with a sequence model): the artifact in force,
        its two mixes and its taste parameters (a newer version is picked up without a
        restart, and its version names every list ranked with it)."""
        art, version = self.weights.current()
        if self._mixes is None or self._mixes[0] != version:
            self._mixes = (
                version,
                FusionWeights.from_mix(art.base.weights, art.taste),
                FusionWeights.from_mix(art.sequence.weights, art.taste),
            )
            self.deps.metrics.fusion_weights.clear()
            self.deps.metrics.fusion_weights.labels(version=version).set(1)
        return self._mixes

    async def refresh(
        self, touched: Sequence[Touched], send: Callable[[str, Recommendation], Awaitable[Any]]
    ) -> None:
        """Gather each listener's candidates, rank the whole batch in one pass, emit one
        list per listener; a listener whose candidates fail is counted, the others go on."""
        if not touched:
            return
        s, m = self.deps.settings, self.deps.metrics
        step = m.batch_step_seconds
        states = [t.state for t in touched]
        t0 = time.perf_counter()
        sequences = await self._sequences(states)
        t1 = time.perf_counter()
        hits = await self._audio_hits(states)
        t2 = time.perf_counter()
        step.labels(step="sequences").observe(t1 - t0)
        step.labels(step="audio").observe(t2 - t1)
        now_ms = int(time.time() * 1000)
        version, base, with_seq = self.mixes()
        popular, fresh = self.catalog.lists(
            top_popular=2 * s.top_k,
            top_fresh=s.top_k,
            now_ms=now_ms,
            fresh_window_ms=base.fresh_window_ms,
        )
        groups = self._pools(touched, sequences, hits, popular, fresh, now_ms, base, with_seq)
        t3 = time.perf_counter()
        ranked: dict[tuple[int, ListKind], tuple[list[RecommendedItem], str, str]] = {}
        for with_sequence, group in groups.items():
            for kind, lists in self._rank_kinds(group, with_seq if with_sequence else base):
                for (t, _, source, served), items in zip(group, lists, strict=True):
                    if items is not None:
                        ranked[id(t), kind] = (items, source, served)
        t4 = time.perf_counter()
        for t in touched:  # emitted in the batch's order, the kinds in the settings' order
            for kind in s.list_kinds:
                if (done := ranked.get((id(t), kind))) is None:
                    continue
                items, source, served = done
                await send(t.state.user_id, self._message(t, kind, items, version, served))
                m.recommendations.labels(source=source, kind=kind).inc()
            if any((id(t), kind) in ranked for kind in s.list_kinds):
                self._observe_latency(t)
        step.labels(step="candidates").observe(t3 - t2)
        step.labels(step="rank").observe(t4 - t3)
        step.labels(step="emit").observe(time.perf_counter() - t4)

    def _rank_kinds(
        self, group: Sequence[tuple[Touched, Pool, str, str]], weights: FusionWeights
    ) -> list[tuple[ListKind, list[list[RecommendedItem] | None]]]:
        """The group's lists of every kind served: a `new` list ranks the pools as they
        are, a `mix` list ranks them with the listener's favourites added."""
        out = []
        for kind in self.deps.settings.list_kinds:
            g = group
            if kind is ListKind.MIX:
                g = [
                    (t, self._with_favourites(t, pool, weights), src, sv)
                    for t, pool, src, sv in group
                ]
            out.append((kind, self._rank(g, weights.for_kind(kind))))
        return out

    def _with_favourites(self, t: Touched, pool: Pool, weights: FusionWeights) -> Pool:
        """The listener's `mix` pool; if making it fails, their pool without favourites
        (counted): one listener's failure must not stop everyone's lists."""
        try:
            return kind_pool(
                ListKind.MIX, t.state, pool, artists=self.catalog.artists, weights=weights
            )
        except Exception:
            self.deps.metrics.events.labels(topic="refresh", outcome="error").inc()
            log.exception("favourites failed for user %s", t.state.user_id)
            return pool

    def _pools(
        self,
        touched: Sequence[Touched],
        sequences: dict[str, tuple[list[tuple[str, float]], str]],
        hits: dict[str, list[Any]],
        popular: Sequence[Any],
        fresh: Sequence[Any],
        now_ms: int,
        base: FusionWeights,
        with_seq: FusionWeights,
    ) -> dict[bool, list[tuple[Touched, Pool, str, str]]]:
        """Each listener's pool, grouped by mix (with the sequence model's or without: one
        ranking pass each); a listener whose candidates fail is counted and left out."""
        groups: dict[bool, list[tuple[Touched, Pool, str, str]]] = {False: [], True: []}
        for t in touched:
            uid = t.state.user_id
            seq, served = sequences.get(uid, ([], ""))
            found = hits.get(uid, [])
            try:
                pool = gather_pool(
                    t.state,
                    found,
                    cache=self.cache,
                    catalog=self.catalog,
                    popular=popular,
                    fresh=fresh,
                    now_ms=now_ms,
                    weights=with_seq if seq else base,
                    sequence=seq,
                )
            except Exception:  # one listener's failure must not stop everyone's lists
                self.deps.metrics.events.labels(topic="refresh", outcome="error").inc()
                log.exception("candidates failed for user %s", uid)
                continue
            groups[bool(seq)].append((t, pool, pool_source(found, seq), served))
        return groups

    def _rank(
        self, group: Sequence[tuple[Touched, Pool, str, str]], weights: FusionWeights
    ) -> list[list[RecommendedItem] | None]:
        """Every pool of ``group`` ranked in one pass; if that fails, one by one, so only
        the listener whose pool breaks the ranking goes without a list (counted)."""
        s, m = self.deps.settings, self.deps.metrics
        kw: dict[str, Any] = {
            "k": s.top_k,
            "max_per_artist": s.max_per_artist,
            "mix": weights.mix_weights,
            "titles": self.catalog.labels,
            "skip": weights.skip_penalty,
        }
        pools = [pool for _, pool, _, _ in group]
        try:
            return list(rank_pools(pools, **kw))
        except Exception:
            log.exception("batch ranking failed; ranking its %d listeners one by one", len(pools))
        out: list[list[RecommendedItem] | None] = []
        for t, pool, _, _ in group:
            try:
                out.append(rank_pools([pool], **kw)[0])
            except Exception:
                m.events.labels(topic="refresh", outcome="error").inc()
                log.exception("ranking failed for user %s", t.state.user_id)
                out.append(None)
        return out

    def _observe_latency(self, t: Touched) -> None:
        done_ms = int(time.time() * 1000)
        for ev in t.events:
            # Folding rejected events outside the window; guard anyway: one wrong clock
            # would swamp the histogram's sum.
            at_ms = int(ev.occurred_at.timestamp() * 1000)
            lat = latency_s(at_ms, now_ms=done_ms, limits=self.limits)
            if lat is not None:
                self.deps.metrics.event_to_recommendation.observe(lat)

    def _message(
        self, t: Touched, kind: ListKind, items: list[RecommendedItem], weights: str, served: str
    ) -> Recommendation:
        # Every artifact behind the list: the pipeline, the audio encoder (its card), the
        # fusion weights, the sequence model.
        base = f"{self.deps.settings.model_version}+{self.deps.card.version}+{weights}"
        return Recommendation(
            user_id=t.state.user_id,
            kind=kind,
            generated_at=datetime.now(UTC),
            source_event_id=t.events[-1].event_id,
            event_ids=[e.event_id for e in t.events],
            model_version=f"{base}+{served}" if served else base,
            items=items,
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
            limit = max(
                search_limit(self.deps.settings.top_k, st, self.cache) for st in by_user.values()
            )
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
