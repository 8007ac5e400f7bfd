"""The lists of one listener: the pool each kind of list ranks, and its ranking.

A `new` list ranks the pool the sources proposed (:func:`streams.candidates.gather_pool`);
a `mix` list ranks it with the listener's favourites added
(:func:`streams.candidates.familiar_pool`), with the weights of its kind
(``FusionWeights.for_kind``). The refresher ranks a whole batch's pools per kind in one pass
(``streams.refresh``, with :func:`kind_pool`); :func:`lists_of` and :func:`rank_listener` do the
same for one listener (the shadow of ``infra.replay.shadow``, the tests).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from schemas.events import ListKind, RecommendedItem
from streams.candidates import (
    VectorCache,
    familiar_pool,
    gather_pool,
    pool_source,
)
from streams.catalog import Catalog, TrackInfo
from streams.fusion import DEFAULT_WEIGHTS, FusionWeights
from streams.rank import Pool, rank_pools
from streams.state import UserState


@dataclass(frozen=True)
class Ranked:
    """The ranked list and how the user vector was made (for metrics)."""

    items: list[RecommendedItem]
    source: str  # "audio" (user vector from audio), "collab-pop" (no audio history),
    # either with "+sequence" when the served sequence model's candidates took part


def rank_listener(
    state: UserState,
    hits: Sequence[Any],
    *,
    cache: VectorCache,
    catalog: Catalog,
    popular: Sequence[TrackInfo],
    fresh: Sequence[TrackInfo],
    k: int,
    max_per_artist: int,
    now_ms: int,
    weights: FusionWeights = DEFAULT_WEIGHTS,
    sequence: Sequence[tuple[str, float]] = (),
) -> Ranked:
    """Top-k for one listener: :func:`gather_pool`, then :func:`rank_pools` of one (the
    refresher ranks a whole batch's pools at once)."""
    pool = gather_pool(
        state,
        hits,
        cache=cache,
        catalog=catalog,
        popular=popular,
        fresh=fresh,
        now_ms=now_ms,
        weights=weights,
        sequence=sequence,
    )
    (items,) = lists_of(
        state, pool, (ListKind.NEW,), catalog=catalog, weights=weights, k=k, cap=max_per_artist
    ).values()
    return Ranked(items=items, source=pool_source(hits, sequence))


def kind_pool(
    kind: ListKind,
    state: UserState,
    pool: Pool,
    *,
    artists: Mapping[str, str],
    weights: FusionWeights,
) -> Pool:
    """The pool a list of ``kind`` ranks: a `new` list the sources' pool as it is, a `mix`
    list that pool with the listener's favourites (:func:`familiar_pool`)."""
    if kind is ListKind.MIX:
        return familiar_pool(state, pool, artists=artists, weights=weights)
    return pool


def lists_of(
    state: UserState,
    pool: Pool,
    kinds: Sequence[ListKind],
    *,
    catalog: Catalog,
    weights: FusionWeights,
    k: int,
    cap: int,
) -> dict[ListKind, list[RecommendedItem]]:
    """One listener's list of each kind, ranked as the refresher ranks a batch's (each kind
    its pool, :func:`kind_pool`, and its weights, ``FusionWeights.for_kind``)."""
    out = {}
    for kind in kinds:
        w = weights.for_kind(kind)
        (out[kind],) = rank_pools(
            [kind_pool(kind, state, pool, artists=catalog.artists, weights=weights)],
            k=k,
            max_per_artist=cap,
            mix=w.mix_weights,
            titles=catalog.labels,
            skip=w.skip_penalty,
        )
    return out
