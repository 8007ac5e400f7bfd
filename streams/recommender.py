"""Gathers the fusion inputs for one listener and ranks (blocking; run in an executor).

The Milvus side (embeddings of recent tracks, audio neighbours) goes through a
``TrackStore``; the collaborative side comes from a snapshot of the track-stats
table that the fusion agent takes on the event loop, so no Faust table is read
from another thread.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from schemas.events import RecommendedItem
from streams.fusion import (
    DEFAULT_WEIGHTS,
    Candidate,
    FusionWeights,
    collab_scores,
    rank,
    user_vector,
)
from streams.metrics import Metrics
from streams.state import TrackStats, UserState


class VectorStore(Protocol):
    """What the recommender needs from Milvus (serving.milvus_store.TrackStore)."""

    def get(self, track_ids: Sequence[str]) -> Mapping[str, Any]: ...

    def search(self, vector: np.ndarray, *, k: int, exclude: Collection[str] = ()) -> list[Any]: ...


@dataclass(frozen=True)
class CatalogSnapshot:
    """Track-level signals, copied from the track-stats table on the event loop."""

    coplays: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    popular: Sequence[TrackStats] = ()  # most popular first
    fresh: Sequence[TrackStats] = ()  # newest uploads first
    artists: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Ranked:
    """The ranked list and how the user vector was made (for metrics)."""

    items: list[RecommendedItem]
    source: str  # "audio" (user vector from audio), "collab-pop" (no audio history),
    # either with "+sequence" when the served sequence model's candidates took part


def recommend(
    state: UserState,
    catalog: CatalogSnapshot,
    *,
    store: VectorStore,
    k: int,
    max_per_artist: int,
    metrics: Metrics | None = None,
    weights: FusionWeights = DEFAULT_WEIGHTS,
    now_ms: int | None = None,
    sequence: Sequence[tuple[str, float]] = (),
) -> Ranked:
    """Top-k for one listener from audio neighbours, co-plays, popularity and fresh uploads.

    ``sequence``: (track, score) from the served sequence model, best first; scores become
    ``exp(score - best)`` (probability relative to the model's top pick). Pass weights with a
    ``sequence`` weight (``SEQUENCE_WEIGHTS``) for them to count.
    """
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    recent = list(state.recent)
    exclude = set(state.heard)
    candidates: list[Candidate] = []

    t0 = time.perf_counter()
    rows = store.get([h.track_id for h in recent]) if recent else {}
    _observe(metrics, "get", t0)
    embeddings = {tid: np.asarray(r.embedding, dtype=np.float32) for tid, r in rows.items()}
    u = user_vector(recent, embeddings, weights)
    source = "collab-pop"
    if u is not None:
        source = "audio"
        t0 = time.perf_counter()
        # Over-fetch: the per-artist cap and collaborative re-ranking need room.
        hits = store.search(u, k=max(4 * k, 50), exclude=exclude)
        _observe(metrics, "search", t0)
        liked = [h.track_id for h in state.positives() if h.track_id in embeddings]
        t0 = time.perf_counter()
        hit_rows = store.get([h.track_id for h in hits]) if hits else {}
        _observe(metrics, "get", t0)
        for h in hits:
            row = hit_rows.get(h.track_id)
            similar = _closest(row.embedding, liked, embeddings) if row is not None else None
            candidates.append(
                Candidate(
                    track_id=h.track_id,
                    artist_id=h.artist_id or None,
                    audio=float(h.score),
                    fresh=_is_fresh(h.uploaded_at_ms, now_ms, weights),
                    similar_to=similar,
                )
            )
    for tid, (score, via) in collab_scores(recent, catalog.coplays, weights).items():
        candidates.append(
            Candidate(
                track_id=tid, artist_id=catalog.artists.get(tid), collab=score, coplayed_with=via
            )
        )
    if sequence:
        best = max(sc for _, sc in sequence)
        t0 = time.perf_counter()
        # Artist and upload time of tracks that have audio (per-artist cap, fresh bonus).
        seq_rows = store.get([t for t, _ in sequence])
        _observe(metrics, "get", t0)
        for tid, sc in sequence:
            row = seq_rows.get(tid)
            candidates.append(
                Candidate(
                    track_id=tid,
                    artist_id=(row.artist_id if row is not None else None)
                    or catalog.artists.get(tid),
                    fresh=row is not None and _is_fresh(row.uploaded_at_ms, now_ms, weights),
                    sequence=float(np.exp(min(0.0, sc - best))),
                )
            )
        source = f"{source}+sequence"
    for st in catalog.popular:
        candidates.append(
            Candidate(track_id=st.track_id, artist_id=st.artist_id, popularity=st.popularity())
        )
    for st in catalog.fresh:
        candidates.append(Candidate(track_id=st.track_id, artist_id=st.artist_id, fresh=True))
    items = rank(candidates, exclude=exclude, k=k, max_per_artist=max_per_artist, w=weights)
    return Ranked(items=items, source=source)


def _closest(vec: Any, liked: list[str], embeddings: Mapping[str, np.ndarray]) -> str | None:
    """The played track whose audio is most similar to ``vec`` (the "because")."""
    if not liked:
        return None
    v = np.asarray(vec, dtype=np.float32)
    sims = [float(np.dot(v, embeddings[t])) for t in liked]
    return liked[int(np.argmax(sims))]


def _is_fresh(uploaded_at_ms: int | None, now_ms: int, w: FusionWeights) -> bool:
    return bool(uploaded_at_ms) and now_ms - int(uploaded_at_ms or 0) <= w.fresh_window_ms


def _observe(metrics: Metrics | None, op: str, t0: float) -> None:
    if metrics is not None:
        metrics.milvus_seconds.labels(op=op).observe(time.perf_counter() - t0)


def snapshot(
    stats: Mapping[str, TrackStats],
    history: Sequence[str],
    *,
    top_popular: int,
    top_fresh: int,
    now_ms: int,
    weights: FusionWeights = DEFAULT_WEIGHTS,
) -> CatalogSnapshot:
    """What one refresh needs from the track-stats table (pure; the caller copies the table)."""
    coplays = {t: stats[t].coplays for t in history if t in stats}
    artists: dict[str, str] = {}
    for co in coplays.values():
        for t in co:
            st = stats.get(t)
            if st is not None and st.artist_id:
                artists[t] = st.artist_id
    popular = sorted(
        (s for s in stats.values() if s.popularity() > 0),
        key=lambda s: (-s.popularity(), s.track_id),
    )[:top_popular]
    fresh = sorted(
        (
            s
            for s in stats.values()
            if s.uploaded_at_ms and now_ms - s.uploaded_at_ms <= weights.fresh_window_ms
        ),
        key=lambda s: (-(s.uploaded_at_ms or 0), s.track_id),
    )[:top_fresh]
    return CatalogSnapshot(coplays=coplays, popular=popular, fresh=fresh, artists=artists)
