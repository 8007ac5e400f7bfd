"""A seeded ranking scenario: catalog, vectors, listeners, audio hits and sequence picks.

Built the same way before and after a change of the ranking's implementation, so the lists it
ranks can be compared with lists recorded earlier (``tests/fixtures/rank_golden.json``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from schemas.events import InteractionType
from streams.candidates import CachedTrack, VectorCache
from streams.catalog import Catalog
from streams.state import CatalogDelta, HeardFilter, HistoryItem, UploadInfo, UserState

NOW_MS = 1_800_000_000_000
DAY_MS = 86_400_000


@dataclass
class Scenario:
    catalog: Catalog
    cache: VectorCache
    states: list[UserState]
    hits: dict[str, list[tuple[str, float]]]
    sequences: dict[str, list[tuple[str, float]]]


def build(seed: int = 7, *, tracks: int = 400, listeners: int = 60, dim: int = 16) -> Scenario:
    rng = np.random.RandomState(seed)
    ids = [f"t{i:03d}" for i in range(tracks)]
    artists = [f"a{rng.randint(0, 40)}" for _ in ids]
    catalog = Catalog(ttl_s=0.0)
    cache = VectorCache(capacity=10_000)
    vectors = rng.normal(size=(tracks, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with_audio = rng.rand(tracks) < 0.7
    uploads: dict[str, UploadInfo] = {}
    for i, t in enumerate(ids):
        if with_audio[i]:
            at = NOW_MS - int(rng.randint(0, 5 * DAY_MS))
            uploads[t] = UploadInfo(
                artist_id=artists[i], uploaded_at_ms=at, title=f"Song {i}" if i % 3 else None
            )
            cache.put(t, CachedTrack(embedding=vectors[i], artist_id=artists[i], uploaded_at_ms=at))
        else:
            cache.put(t, None)
    plays = {t: int(rng.randint(0, 30)) for t in ids if rng.rand() < 0.6}
    skips = {t: int(rng.randint(0, 10)) for t in ids if rng.rand() < 0.3}
    coplays: dict[str, dict[str, int]] = {}
    for _ in range(3000):
        a, b = rng.randint(0, tracks, size=2)
        if a != b:
            n = int(rng.randint(1, 4))
            coplays.setdefault(ids[a], {})[ids[b]] = coplays.get(ids[a], {}).get(ids[b], 0) + n
    catalog.apply(
        CatalogDelta(delta_id="d0", plays=plays, skips=skips, coplays=coplays, uploads=uploads)
    )
    kinds = [InteractionType.PLAY, InteractionType.SKIP, InteractionType.LIKE]
    states: list[UserState] = []
    hits: dict[str, list[tuple[str, float]]] = {}
    sequences: dict[str, list[tuple[str, float]]] = {}
    for u in range(listeners):
        n = int(rng.randint(0, 50))
        recent = tuple(
            HistoryItem(
                track_id=ids[int(rng.randint(0, tracks))],
                type=kinds[int(rng.choice(3, p=[0.7, 0.2, 0.1]))],
                at_ms=NOW_MS - (n - j) * 60_000,
            )
            for j in range(n)
        )
        heard = HeardFilter().add(ids[int(x)] for x in rng.randint(0, tracks, size=20))
        st = UserState(user_id=f"u{u:02d}", recent=recent, heard=heard)
        states.append(st)
        if u % 4 != 3:  # most listeners have audio neighbours
            q = vectors[int(rng.randint(0, tracks))]
            sims = vectors @ q
            order = [int(i) for i in np.argsort(-sims) if with_audio[int(i)]][:60]
            hits[st.user_id] = [(ids[i], float(sims[i])) for i in order]
        if u % 3 == 0:  # a sequence model's picks for a third of them
            picks = rng.choice(tracks, size=25, replace=False)
            logits = np.sort(rng.normal(size=25))[::-1]
            sequences[st.user_id] = [
                (ids[int(i)], float(s)) for i, s in zip(picks, logits, strict=True)
            ]
    return Scenario(catalog, cache, states, hits, sequences)
