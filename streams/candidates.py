"""Candidates: what each source proposes for a listener, gathered into a pool (pure).

The refresher does the I/O (one ``get`` for the vectors the cache lacks, one batched
search for every listener of a batch) and calls these functions on the event loop:
:func:`taste_vectors` before the search, :func:`gather_pool` after it, once per listener;
:func:`streams.rank.rank_pools` then ranks every pool of the batch in one pass. Nothing here
talks to Milvus or Kafka.
"""

from __future__ import annotations

import functools
import heapq
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.fusion_rule import SIGNALS, audio_skip_evidence, familiarity
from models.like_skip import fit, learnt_skip_evidence
from schemas.event_time import is_fresh
from schemas.events import InteractionType
from streams.catalog import Catalog, TrackInfo
from streams.fusion import (
    DEFAULT_WEIGHTS,
    FusionWeights,
    collab_scores,
    recency_weights,
    user_vector,
)
from streams.rank import Pool, PoolBuilder
from streams.state import HeardMatcher, UserState

#: co-play candidates kept per listener (the strongest; see ``rank_listener``)
COLLAB_CANDIDATES = 30
#: recent events whose co-plays count, and neighbours read per track
COLLAB_HISTORY = 20
COLLAB_NEIGHBOURS = 50
#: artist candidates per listener, and the most popular tracks read per artist
ARTIST_CANDIDATES = 30
ARTIST_TRACKS = 20


@dataclass(frozen=True, eq=False)
class CachedTrack:
    """What ranking needs of a track with audio (from Milvus, kept in the worker)."""

    embedding: np.ndarray
    artist_id: str | None
    uploaded_at_ms: int | None


class VectorCache:
    """Track vectors by id, including "has no vector" answers, least recently used out.

    A track's vector only changes when it is uploaded again, and every upload reaches
    every worker as a catalog delta, which invalidates the entry (``invalidate``); so
    entries need no time limit, and tracks without audio are not asked for again.
    """

    def __init__(self, *, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._rows: OrderedDict[str, CachedTrack | None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._rows)

    def missing(self, ids: Iterable[str]) -> list[str]:
        """Ids never looked up (or invalidated since)."""
        return [t for t in dict.fromkeys(ids) if t not in self._rows]

    def put(self, track_id: str, row: CachedTrack | None) -> None:
        """Remember a track's vector, or that it has none."""
        self._rows[track_id] = row
        self._rows.move_to_end(track_id)
        if len(self._rows) > self.capacity:
            self._rows.popitem(last=False)

    def fill(self, asked: Sequence[str], rows: Mapping[str, Any]) -> None:
        """Store the answer of a ``get`` for ``asked``: rows found, the rest as absent."""
        for t in asked:
            r = rows.get(t)
            self.put(
                t,
                None
                if r is None
                else CachedTrack(
                    embedding=np.asarray(r.embedding, dtype=np.float32),
                    artist_id=r.artist_id or None,
                    uploaded_at_ms=r.uploaded_at_ms or None,
                ),
            )

    def embeddings(self, ids: Iterable[str]) -> dict[str, np.ndarray]:
        """Vectors of the ids that have one (cached)."""
        out: dict[str, np.ndarray] = {}
        for t in ids:
            row = self._rows.get(t)
            if row is not None:
                out[t] = row.embedding
        return out

    def row(self, track_id: str) -> CachedTrack | None:
        """One track's cached row, if it has a vector."""
        return self._rows.get(track_id)

    def vector(self, track_id: str) -> np.ndarray | None:
        """One track's cached vector, if it has one."""
        row = self._rows.get(track_id)
        return None if row is None else row.embedding

    def invalidate(self, ids: Iterable[str]) -> None:
        """Forget these tracks (they were uploaded again)."""
        for t in ids:
            self._rows.pop(t, None)


@dataclass(frozen=True)
class AudioHit:
    """An audio neighbour as ranking uses it: the search's id and cosine, the rest from the
    vector cache (no stored field is decoded per hit)."""

    track_id: str
    score: float
    artist_id: str
    uploaded_at_ms: int


def audio_hits(found: Sequence[tuple[str, float]], cache: VectorCache) -> list[AudioHit]:
    """Search answers with their cached artist and upload time (tracks the cache knows to
    have no vector are dropped: deleted since the index was searched)."""
    out: list[AudioHit] = []
    for track_id, score in found:
        row = cache.row(track_id)
        if row is not None:
            out.append(AudioHit(track_id, score, row.artist_id or "", row.uploaded_at_ms or 0))
    return out


def audio_candidates(k: int) -> int:
    """Audio hits a listener's ranking looks at: room for the per-artist cap and for the
    other signals to re-rank, no more (ranking cost grows with candidates)."""
    return max(3 * k, 30)


def sequence_top_n(k: int) -> int:
    """Sequence-model tracks a listener's ranking looks at (its best unheard ones), as for
    audio hits: room for the per-artist cap and re-ranking, no more (every one is a pool
    entry for every listener)."""
    return max(4 * k, 50)


def search_limit(k: int, state: UserState, cache: VectorCache) -> int:
    """Hits to ask for: room for the per-artist cap and re-ranking, plus the listener's
    recent tracks that have a vector, which are dropped afterwards (each listener excludes
    other tracks, so one batched search cannot filter them). A recent track without audio
    can never be a hit, so it takes no room: every hit costs the client a parsed object."""
    with_audio = sum(1 for t in {h.track_id for h in state.recent} if cache.row(t) is not None)
    return audio_candidates(k) + with_audio


def taste_vectors(
    states: Iterable[UserState], cache: VectorCache, weights: FusionWeights = DEFAULT_WEIGHTS
) -> dict[str, np.ndarray]:
    """User id -> taste vector, for the listeners whose recent plays have audio."""
    out: dict[str, np.ndarray] = {}
    for st in states:
        emb = cache.embeddings(h.track_id for h in st.recent)
        u = user_vector(st.recent, emb, weights)
        if u is not None:
            out[st.user_id] = u
    return out


class _Excluded:
    """A listener's recent tracks and heard filter, as one ``in``."""

    __slots__ = ("recent", "heard")

    def __init__(self, recent: set[str], heard: HeardMatcher) -> None:
        self.recent, self.heard = recent, heard

    def __contains__(self, track_id: str) -> bool:
        return track_id in self.recent or track_id in self.heard


_AUDIO, _COLLAB, _POP, _FRESH, _SEQ, _FAMILIAR, _ARTIST = range(7)  # fusion_rule.SIGNALS order


def gather_pool(
    state: UserState,
    hits: Sequence[Any],
    *,
    cache: VectorCache,
    catalog: Catalog,
    popular: Sequence[TrackInfo],
    fresh: Sequence[TrackInfo],
    now_ms: int,
    weights: FusionWeights = DEFAULT_WEIGHTS,
    sequence: Sequence[tuple[str, float]] = (),
) -> Pool:
    """One listener's candidates from audio hits, co-plays, the sequence model, popularity
    and fresh uploads; recent and heard tracks left out.

    ``sequence``: (track, score) from the served sequence model, best first; scores become
    ``exp(score - best)`` (probability relative to the model's top pick).
    """
    recent = list(state.recent)
    heard, played = state.heard.matcher(), {h.track_id for h in recent}
    b = PoolBuilder(exclude=played if heard.empty else _Excluded(played, heard))
    pool = b.pool
    window = weights.fresh_window_ms
    for h in hits:
        n = b.add(
            h.track_id,
            h.artist_id or None,
            _AUDIO,
            float(h.score),
            fresh=is_fresh(h.uploaded_at_ms, now_ms=now_ms, window_ms=window),
        )
        if n is not None and (v := cache.vector(h.track_id)) is not None:
            pool.hit_vectors.setdefault(n, v)
    if pool.hit_vectors:
        # Asked by each kind's list that carries an audio item: worked out once.
        pool.played = functools.cache(lambda: _played(state, cache))
    _add_coplayed(b, recent, catalog, weights)
    artists = catalog.artists
    if sequence:
        uploaded = catalog.uploaded
        best = max(sc for _, sc in sequence)
        for tid, sc in sequence:
            b.add(
                tid,
                artists.get(tid),
                _SEQ,
                float(np.exp(min(0.0, sc - best))),
                # Most sequence picks are no upload at all: skip the freshness rule for them.
                fresh=tid in uploaded and is_fresh(uploaded[tid], now_ms=now_ms, window_ms=window),
            )
    for t in popular:
        b.add(t.track_id, t.artist_id, _POP, t.popularity)
    for t in fresh:
        b.add(t.track_id, t.artist_id, _FRESH, 1.0, fresh=True)
    if weights.artist > 0.0 and (counts := artist_counts(recent, artists)):
        _add_by_artist(b, counts, catalog)
        rows = pool.values
        for n, a in enumerate(pool.artists):
            if a and (c := counts.get(a)):
                rows[n][_ARTIST] = c
    skip_evidence(state, pool, cache=cache, artists=artists, weights=weights)
    return pool


def familiar_pool(
    state: UserState, pool: Pool, *, artists: Mapping[str, str], weights: FusionWeights
) -> Pool:
    """The listener's `mix` pool: ``pool`` (what the sources proposed, nothing heard) and the
    favourites of the recent window that may come back (``models.fusion_rule.familiarity``:
    after the cool-down, never right after a skip), each with its familiar signal only.

    Their other signals stay 0: the sources propose unheard tracks only (the sequence model
    excludes the history it is given), and the offline counterpart scores them the same way.
    ``pool`` is not changed; its entries keep their numbers, so its reasons still apply."""
    fam = familiarity(
        [(h.track_id, h.type is not InteractionType.SKIP) for h in state.recent],
        decay=weights.recency_decay,
        cooldown=weights.familiar_cooldown,
    )
    known = set(pool.ids)
    extra = [str(t) for t in fam if t not in known]
    if not extra:
        return pool
    pad = [0.0] * len(extra)
    out = Pool(
        ids=[*pool.ids, *extra],
        artists=[*pool.artists, *(artists.get(t) for t in extra)],
        # The pool's rows are shared, not copied: they are not changed here.
        values=[*pool.values, *(_familiar_row(fam[t]) for t in extra)],
        fresh=[*pool.fresh, *(False for _ in extra)],
        similar_to=pool.similar_to,
        coplayed_with=pool.coplayed_with,
        hit_vectors=pool.hit_vectors,
        played=pool.played,
        # A favourite's own recent plays outweigh a skip of another track: no penalty.
        skip_audio=[*pool.skip_audio, *pad] if pool.skip_audio else [],
        skip_artist=[*pool.skip_artist, *pad] if pool.skip_artist else [],
        skip_learnt=[*pool.skip_learnt, *pad] if pool.skip_learnt else [],
    )
    return out


def _familiar_row(value: float) -> list[float]:
    row = [0.0] * len(SIGNALS)
    row[_FAMILIAR] = value
    return row


def artist_counts(recent: Iterable[Any], artists: Mapping[str, str]) -> dict[str, float]:
    """Artist -> how many of the listener's recent plays and likes are by them (the artist
    signal of each of their tracks; offline: the artist content KNN over the same window,
    whose cosine, scaled by its maximum, is the same count scaled by the largest)."""
    out: dict[str, float] = {}
    for h in recent:
        if h.type is not InteractionType.SKIP and (a := artists.get(h.track_id)):
            out[a] = out.get(a, 0.0) + 1.0
    return out


def _add_by_artist(b: PoolBuilder, counts: Mapping[str, float], catalog: Catalog) -> None:
    """The most popular unheard tracks of the listener's most played artists (content for
    tracks without audio: they are found by nothing else when nobody co-played them)."""
    added = 0
    for a, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        for t in catalog.tracks_by(a, ARTIST_TRACKS):
            if b.add(t, a, _ARTIST, c) is not None:
                added += 1
                if added >= ARTIST_CANDIDATES:
                    return


def _add_coplayed(
    b: PoolBuilder, recent: list[Any], catalog: Catalog, weights: FusionWeights
) -> None:
    """The tracks most co-played with the listener's recent ones, with the track each came
    through (the collab reason)."""
    # The newest events carry the weight (0.85^20 = 0.04): co-plays of the last 20 events and
    # each track's strongest neighbours keep the cost flat as the catalog learns.
    window = recent[-COLLAB_HISTORY:]
    coplays = {h.track_id: catalog.coplays_of(h.track_id, COLLAB_NEIGHBOURS) for h in window}
    score, via = collab_scores(window, coplays, weights)
    # Co-plays of 50 recent tracks reach ~1,000 tracks; only the strongest can make a top-k
    # list, so only they become candidates (ranking cost stays flat as co-plays accumulate).
    artists = catalog.artists
    for tid in heapq.nlargest(COLLAB_CANDIDATES, score, key=score.__getitem__):
        n = b.add(tid, artists.get(tid), _COLLAB, score[tid])
        if n is not None:
            b.pool.coplayed_with.setdefault(n, via[tid])


def standing_skips(state: UserState, decay: float) -> dict[str, float]:
    """Skipped track -> recency weight of its newest skip (as ``recency_weights`` weighs the
    events), for the skips the listener has not taken back: a track played or liked after
    its skip no longer speaks against what sounds like it."""
    return kept_and_skipped(state, decay)[1]


def kept_and_skipped(state: UserState, decay: float) -> tuple[dict[str, float], dict[str, float]]:
    """The listener's recent tracks by their newest event: (kept: played or liked, skipped),
    each track -> that event's recency weight (the newest event weighs 1)."""
    recent = list(state.recent)
    kept: dict[str, float] = {}
    skipped: dict[str, float] = {}
    weights = recency_weights(len(recent), decay).tolist()
    for h, wt in zip(reversed(recent), reversed(weights), strict=True):
        if h.track_id in kept or h.track_id in skipped:
            continue  # an older event of a track already labelled by its newest
        (skipped if h.type is InteractionType.SKIP else kept)[h.track_id] = wt
    return kept, skipped


def skip_evidence(
    state: UserState,
    pool: Pool,
    *,
    cache: VectorCache,
    artists: Mapping[str, str],
    weights: FusionWeights,
) -> None:
    """Fill ``pool.skip_audio`` / ``skip_artist`` / ``skip_learnt``: how much the listener's
    standing skips speak against each candidate (``models.fusion_rule``). Left empty (no
    cost) when the listener skipped nothing lately or the penalties are off."""
    w = weights
    if not pool.ids or (
        w.skip_audio_penalty == 0.0 and w.skip_artist_penalty == 0.0 and w.like_skip_penalty == 0.0
    ):
        return
    kept, skips = kept_and_skipped(state, w.recency_decay)
    if not skips:
        return
    skipped = cache.embeddings(skips) if w.skip_audio_penalty or w.like_skip_penalty else {}
    # Every candidate with audio, hit or not: a co-played or popular track that sounds like
    # the skip is as unwelcome as an audio neighbour.
    vecs = (
        {n: v for n, t in enumerate(pool.ids) if (v := cache.vector(t)) is not None}
        if skipped
        else {}
    )
    if w.skip_audio_penalty > 0.0 and vecs:
        ev = audio_skip_evidence(
            np.stack(list(vecs.values())),
            np.stack(list(skipped.values())),
            np.array([skips[t] for t in skipped]),
            w.skip_audio_floor,
        )
        pool.skip_audio = _per_entry(len(pool.ids), vecs, ev)
    if w.like_skip_penalty > 0.0 and vecs:
        _learnt_evidence(pool, vecs, cache.embeddings(kept), kept, skipped, skips, w)
    if w.skip_artist_penalty > 0.0:
        by_artist: dict[str, float] = {}
        for t, wt in skips.items():
            row = cache.row(t)
            a = (row.artist_id if row is not None else None) or artists.get(t)
            if a:
                by_artist[a] = max(wt, by_artist.get(a, 0.0))
        if by_artist:
            pool.skip_artist = [by_artist.get(a, 0.0) if a else 0.0 for a in pool.artists]


def _learnt_evidence(
    pool: Pool,
    vecs: Mapping[int, np.ndarray],
    kept_vecs: Mapping[str, np.ndarray],
    kept: Mapping[str, float],
    skipped_vecs: Mapping[str, np.ndarray],
    skips: Mapping[str, float],
    w: FusionWeights,
) -> None:
    """``pool.skip_learnt`` from the listener's like/skip model (``models.like_skip``), fitted
    on the audio of what they kept and skipped; left empty when it has no contrast."""
    if not kept_vecs:
        return
    model = fit(
        np.stack(list(kept_vecs.values())),
        np.stack(list(skipped_vecs.values())),
        l2=w.like_skip_l2,
        kept_weight=np.array([kept[t] for t in kept_vecs]),
        skipped_weight=np.array([skips[t] for t in skipped_vecs]),
    )
    if model is not None:
        ev = learnt_skip_evidence(model, np.stack(list(vecs.values())))
        pool.skip_learnt = _per_entry(len(pool.ids), vecs, ev)


def _per_entry(width: int, vecs: Mapping[int, np.ndarray], ev: np.ndarray) -> list[float]:
    """Evidence of the entries with audio (``vecs``' keys, in order), 0 for the rest."""
    out = [0.0] * width
    for n, e in zip(vecs, ev.tolist(), strict=True):
        out[n] = e
    return out


def _played(state: UserState, cache: VectorCache) -> tuple[list[str], np.ndarray] | None:
    """Ids and vectors of the listener's played tracks with audio (for "sounds like X"):
    asked for by the ranking only when a list carries an audio item."""
    played = cache.embeddings(h.track_id for h in state.positives())
    return (list(played), np.stack(list(played.values()))) if played else None


def pool_source(hits: Sequence[Any], sequence: Sequence[Any]) -> str:
    """How the list was made (for metrics): "audio" (user vector from audio) or
    "collab-pop" (no audio history), with "+sequence" when the sequence model took part."""
    source = "audio" if hits else "collab-pop"
    return f"{source}+sequence" if sequence else source
