"""Rank: every listener of a batch scored in one pass, reasons written for what is emitted.

The candidates step (:mod:`streams.candidates`) gives each listener a :class:`Pool`: the
tracks its sources proposed, one entry per track, with the strongest value each source
said for it. :func:`rank_pools` then stacks the pools into one ``listeners x candidates``
matrix per signal (zero-padded: zero is "no evidence", and padding changes no row's
maximum), scores them all with the fusion rule the offline hybrid ranks with
(``models.fusion_rule``: each signal scaled by its row maximum, then mixed), orders each row
by score (ties on track id, so lists are deterministic), lowers the scores of what
the listener's recent skips speak against (``Pool.skip_audio`` / ``skip_artist`` /
``skip_learnt``, a matrix each like the signals, applied by ``models.fusion_rule.penalise``),
applies the per-artist cap and writes a reason for each item emitted, only for those.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain

import numpy as np

from models.fusion_rule import (
    NO_SKIP_PENALTY,
    SIGNALS,
    MixWeights,
    SkipPenalty,
    capped,
    penalise,
    scale_signals,
    weighted_parts,
)
from schemas.events import RecommendedItem
from streams.fusion import DEFAULT_WEIGHTS, FusionWeights

_AUDIO, _COLLAB, _POP, _FRESH, _SEQ, _FAMILIAR, _ARTIST = (SIGNALS.index(s) for s in SIGNALS)
_WIDTH = len(SIGNALS)


@dataclass(frozen=True)
class Candidate:
    """A track that one of the sources proposed, with what it said (one at a time: the
    candidates step fills a :class:`PoolBuilder` directly, without these)."""

    track_id: str
    artist_id: str | None = None
    audio: float = 0.0  # raw cosine similarity to the user vector
    collab: float = 0.0  # weighted co-play count
    popularity: float = 0.0  # plays net of skips
    fresh: bool = False
    similar_to: str | None = None  # played track whose audio is closest (audio reason)
    coplayed_with: str | None = None  # played track it was co-played with (collab reason)
    sequence: float = 0.0  # sequence model's score relative to its best, in [0, 1]


@dataclass
class Pool:
    """One listener's candidates: one entry per track, ``values[n][s]`` the raw value of
    signal ``SIGNALS[s]`` for entry ``n`` (a row per entry: adding a track is one list, and
    a pool extended by more entries shares the rows it had).

    ``similar_to`` names the played track an audio candidate sounds like; where it is not
    given, it is worked out for the items emitted only, from ``hit_vectors`` (entry ->
    audio vector) and ``played`` (ids and vectors of the listener's played tracks; a function,
    called only when an emitted item's best signal is audio).

    ``skip_audio`` / ``skip_artist`` / ``skip_learnt``: per entry, the evidence of the
    listener's recent skips against it (``models.fusion_rule``; ``skip_learnt`` from the
    listener's like/skip model, ``models.like_skip``); empty when the listener skipped nothing
    lately (``skip_learnt`` also when they kept nothing with audio).
    """

    ids: list[str]
    artists: list[str | None]
    values: list[list[float]]
    fresh: list[bool]
    similar_to: dict[int, str] = field(default_factory=dict)
    coplayed_with: dict[int, str] = field(default_factory=dict)
    hit_vectors: dict[int, np.ndarray] = field(default_factory=dict)
    played: Callable[[], tuple[list[str], np.ndarray] | None] | None = None
    skip_audio: list[float] = field(default_factory=list)
    skip_artist: list[float] = field(default_factory=list)
    skip_learnt: list[float] = field(default_factory=list)


class PoolBuilder:
    """Collects one listener's candidates, merging a track proposed by several sources
    (strongest value of each signal, first artist and reasons given)."""

    __slots__ = ("_index", "_exclude", "pool")

    def __init__(self, *, exclude: object = ()) -> None:
        # ``exclude``: anything with ``in`` (recent tracks, the heard filter).
        self._index: dict[str, int] = {}
        self._exclude = exclude
        self.pool = Pool(ids=[], artists=[], values=[], fresh=[])

    def add(
        self,
        track_id: str,
        artist_id: str | None,
        signal: int,
        value: float,
        *,
        fresh: bool = False,
    ) -> int | None:
        """Propose ``track_id`` with ``value`` for signal number ``signal`` (and, when
        ``fresh``, as a recent upload: the fresh signal 1); its entry, or None when the
        track is excluded."""
        # Called ~100 times per listener and refresh: one dict lookup for a track already
        # proposed, one new row for a new one.
        p = self.pool
        n = self._index.get(track_id)
        if n is None:
            if track_id in self._exclude:  # type: ignore[operator]
                return None
            n = self._index[track_id] = len(p.ids)
            p.ids.append(track_id)
            p.artists.append(artist_id)
            row = [0.0] * _WIDTH
            row[signal] = value
            p.values.append(row)
            p.fresh.append(fresh)
        else:
            row = p.values[n]
            if value > row[signal]:
                row[signal] = value
            if not p.artists[n] and artist_id:
                p.artists[n] = artist_id
        if fresh:
            p.fresh[n] = True
            if row[_FRESH] < 1.0:
                row[_FRESH] = 1.0
        return n

    def add_candidate(self, c: Candidate) -> None:
        """Propose a :class:`Candidate` (every signal it carries)."""
        n = self.add(c.track_id, c.artist_id, _AUDIO, c.audio, fresh=c.fresh)
        if n is None:
            return
        row = self.pool.values[n]
        for s, v in ((_COLLAB, c.collab), (_POP, c.popularity), (_SEQ, c.sequence)):
            if v > row[s]:
                row[s] = v
        if c.similar_to and n not in self.pool.similar_to:
            self.pool.similar_to[n] = c.similar_to
        if c.coplayed_with and n not in self.pool.coplayed_with:
            self.pool.coplayed_with[n] = c.coplayed_with


def rank_pools(
    pools: Sequence[Pool],
    *,
    k: int,
    max_per_artist: int,
    mix: MixWeights,
    titles: Mapping[str, str] | None = None,
    skip: SkipPenalty = NO_SKIP_PENALTY,
) -> list[list[RecommendedItem]]:
    """Top-``k`` of every pool, scored in one pass; one list per pool, in order."""
    widths = [len(p.ids) for p in pools]
    width = max(widths, default=0)
    if width == 0:
        return [[] for _ in pools]
    raw = _signal_matrix(pools, widths, width)
    parts = weighted_parts(scale_signals(dict(zip(SIGNALS, raw, strict=True))), mix)
    # Summed in SIGNALS order (sequence and familiar last: without a sequence model, or in
    # a list of new tracks, they are 0 and change neither sums nor reasons), the same float
    # additions as summing each item's parts.
    columns = list(parts.values())
    total = columns[0]
    for col in columns[1:]:
        total = total + col
    stacked = np.stack(columns)
    total = _penalised(pools, widths, total, skip)
    names = sorted({t for p in pools for t in p.ids})
    order_of = {t: n for n, t in enumerate(names)}
    by_name = np.full((len(pools), width), len(names))
    for i, p in enumerate(pools):
        by_name[i, : widths[i]] = [order_of[t] for t in p.ids]
    keyed = np.where(by_name < len(names), -total, np.inf)
    # Ties (e.g. cold listeners with equal popularity) break on track id: deterministic.
    order = np.lexsort((by_name, keyed), axis=1)
    return [
        _emit(p, order[i, : widths[i]].tolist(), total[i], stacked[:, i], k, max_per_artist, titles)
        for i, p in enumerate(pools)
    ]


def _signal_matrix(pools: Sequence[Pool], widths: list[int], width: int) -> np.ndarray:
    """``signal x listener x entry``, zero-padded: every pool's rows read in one pass (one
    ``fromiter`` over the flattened rows, not one conversion per pool)."""
    total = sum(widths)
    flat = np.fromiter(
        chain.from_iterable(chain.from_iterable(p.values for p in pools)),
        dtype=np.float64,
        count=total * _WIDTH,
    ).reshape(total, _WIDTH)
    listener = np.repeat(np.arange(len(pools)), widths)
    entry = np.arange(total) - np.repeat(np.cumsum(widths) - widths, widths)
    rows = np.zeros((len(pools), width, _WIDTH))
    rows[listener, entry] = flat
    return rows.transpose(2, 0, 1)  # a view


def _penalised(
    pools: Sequence[Pool], widths: list[int], total: np.ndarray, skip: SkipPenalty
) -> np.ndarray:
    """``total`` lowered by the pools' skip evidence (untouched when no pool has any)."""
    if not any(p.skip_audio or p.skip_artist or p.skip_learnt for p in pools):
        return total
    audio, artist = np.zeros_like(total), np.zeros_like(total)
    learnt = np.zeros_like(total) if any(p.skip_learnt for p in pools) else None
    for i, p in enumerate(pools):
        if p.skip_audio:
            audio[i, : widths[i]] = p.skip_audio
        if p.skip_artist:
            artist[i, : widths[i]] = p.skip_artist
        if p.skip_learnt and learnt is not None:
            learnt[i, : widths[i]] = p.skip_learnt
    return penalise(total, audio, artist, skip, learnt)


def _emit(
    p: Pool,
    order: list[int],
    total: np.ndarray,
    parts: np.ndarray,
    k: int,
    max_per_artist: int,
    titles: Mapping[str, str] | None,
) -> list[RecommendedItem]:
    """One listener's list: the per-artist cap down the order (``models.fusion_rule.capped``:
    a favourite back in a `mix` list, familiar signal > 0, is exempt), then the reasons."""
    favourites = {n for n, row in enumerate(p.values) if row[_FAMILIAR]}
    chosen = capped(order, p.artists, k=k, cap=max_per_artist, exempt=favourites)
    best = parts[:, chosen].argmax(axis=0).tolist() if chosen else []
    strength = parts[best, chosen].tolist() if chosen else []
    similar = _similar(p, [n for n, b in zip(chosen, best, strict=True) if b == _AUDIO])
    names = titles or {}
    return [
        RecommendedItem(
            track_id=p.ids[n],
            score=round(float(total[n]), 6),
            reason=_reason(
                b if s > 0 else None,
                p.fresh[n],
                similar.get(n),
                p.coplayed_with.get(n),
                names,
                p.artists[n],
            ),
        )
        for n, b, s in zip(chosen, best, strength, strict=True)
    ]


def _similar(p: Pool, entries: list[int]) -> dict[int, str]:
    """The played track each audio item sounds most like (given, or one matrix product)."""
    out = {n: p.similar_to[n] for n in entries if n in p.similar_to}
    todo = [n for n in entries if n not in out and n in p.hit_vectors]
    played = p.played() if todo and p.played is not None else None
    if todo and played is not None:
        ids, mat = played
        best = (np.stack([p.hit_vectors[n] for n in todo]) @ mat.T).argmax(axis=1).tolist()
        out.update({n: ids[b] for n, b in zip(todo, best, strict=True)})
    return out


def _reason(
    best: int | None,
    fresh: bool,
    similar_to: str | None,
    coplayed_with: str | None,
    titles: Mapping[str, str],
    artist: str | None = None,
) -> str:
    def name(t: str | None) -> str:
        return titles.get(t or "", t or "a track you played")

    if best is None:  # no signal said anything positive
        return "new upload" if fresh else "popular on Resonate"
    if best == _AUDIO:
        return f"sounds like {name(similar_to)}, which you played"
    if best == _COLLAB:
        return f"listeners who played {name(coplayed_with)} also played this"
    if best == _FRESH:
        return "new upload that matches your taste"
    if best == _SEQ:
        return "fits what you have been playing"
    if best == _FAMILIAR:
        return "back in your rotation"
    if best == _ARTIST:
        return f"more by {artist}, whom you have been playing"
    return "popular on Resonate right now"


def rank(
    candidates: Sequence[Candidate],
    *,
    exclude: set[str],
    k: int,
    max_per_artist: int,
    w: FusionWeights = DEFAULT_WEIGHTS,
    titles: Mapping[str, str] | None = None,
) -> list[RecommendedItem]:
    """One list from :class:`Candidate` s (the API and tests): :func:`rank_pools` of one."""
    builder = PoolBuilder(exclude=exclude)
    for c in candidates:
        builder.add_candidate(c)
    (items,) = rank_pools(
        [builder.pool],
        k=k,
        max_per_artist=max_per_artist,
        mix=w.mix_weights,
        titles=titles,
        skip=w.skip_penalty,
    )
    return items
