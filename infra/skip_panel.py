"""A **simulated** panel of listeners on the real clips: do skips teach the ranking?

No log here carries real skips, so listeners are simulated on the 40 real clips (the manifest's
weak per-package ``style``). Each listener likes one style and dislikes another (every ordered
pair of the three styles, several seeds each). It starts from a few plays of liked clips; then,
round after round, the live ranking (``streams.candidates.gather_pool`` +
``streams.rank.rank_pools``, the worker's code) ranks a top-10 over the clips it has not heard
(audio hits: cosine to its taste vector; no co-plays, popularity or uploads), and the listener
skips every disliked clip it is shown (until ``max_skips``) and plays the best-ranked liked clip
shown. Reported: the share of disliked clips in the first list ranked once the listener has
skipped 0, 3 and 10 times (or in its last list if it never got that far: the disliked style
had stopped being shown), for today's rule (no skip penalty) and each penalty tried.

Every clip is a track; its artist is its package. Each package here is one style, so the
artist penalty alone separates the styles on this panel: that is why the audio-only penalty is
reported separately. The per-artist cap is off (3 artists in all).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.audio_eval import Clip, read_manifest, represent
from schemas.events import InteractionType
from streams.candidates import (
    CachedTrack,
    VectorCache,
    audio_candidates,
    audio_hits,
    gather_pool,
    taste_vectors,
)
from streams.catalog import Catalog
from streams.fusion import DEFAULT_WEIGHTS, FusionWeights
from streams.rank import rank_pools
from streams.state import CatalogDelta, HistoryItem, UploadInfo, UserState

NOW_MS = 1_800_000_000_000
OLD_MS = NOW_MS - 365 * 86_400_000  # uploaded long ago: no clip is fresh
K = 10
CHECKPOINTS = (0, 3, 10)

#: penalties tried: name -> (skip_audio_penalty, skip_artist_penalty, skip_audio_floor)
VARIANTS: dict[str, tuple[float, float, float]] = {
    "today": (0.0, 0.0, 0.0),
    "audio 0.25": (0.25, 0.0, 0.0),
    "audio 0.5": (0.5, 0.0, 0.0),
    "audio 0.25 floor 0.5": (0.25, 0.0, 0.5),
    "audio 0.5 floor 0.5": (0.5, 0.0, 0.5),
    "audio 1.0 floor 0.5": (1.0, 0.0, 0.5),
    "artist 0.1": (0.0, 0.1, 0.0),
    "artist 0.25": (0.0, 0.25, 0.0),
    "audio 0.5 floor 0.5 + artist 0.1": (0.5, 0.1, 0.5),
}


@dataclass(frozen=True, kw_only=True)
class World:
    """The clips as the worker would hold them."""

    clips: Sequence[Clip]
    cache: VectorCache
    catalog: Catalog
    vectors: Mapping[str, np.ndarray]


def build_world(clips: Sequence[Clip], vectors: Mapping[str, np.ndarray]) -> World:
    """Vector cache and catalog of the clips (artist = package = the clip id's prefix)."""
    cache, catalog = VectorCache(), Catalog(ttl_s=0.0)
    uploads: dict[str, UploadInfo] = {}
    for c in clips:
        artist = c.clip_id.split("__")[0]
        cache.put(
            c.clip_id,
            CachedTrack(embedding=vectors[c.clip_id], artist_id=artist, uploaded_at_ms=OLD_MS),
        )
        uploads[c.clip_id] = UploadInfo(artist_id=artist, uploaded_at_ms=OLD_MS)
    catalog.apply(CatalogDelta(delta_id="clips", uploads=uploads))
    return World(clips=clips, cache=cache, catalog=catalog, vectors=vectors)


def next_list(world: World, state: UserState, weights: FusionWeights) -> list[str]:
    """The top-``K`` the worker would send this listener now."""
    (u,) = taste_vectors([state], world.cache, weights).values()
    heard = {h.track_id for h in state.recent}
    sims = sorted(
        ((float(world.vectors[c.clip_id] @ u), c.clip_id) for c in world.clips),
        key=lambda x: (-x[0], x[1]),
    )
    found = [(t, s) for s, t in sims if t not in heard][: audio_candidates(K)]
    pool = gather_pool(
        state,
        audio_hits(found, world.cache),
        cache=world.cache,
        catalog=world.catalog,
        popular=[],
        fresh=[],
        now_ms=NOW_MS,
        weights=weights,
    )
    (items,) = rank_pools(
        [pool], k=K, max_per_artist=K, mix=weights.mix_weights, skip=weights.skip_penalty
    )
    return [i.track_id for i in items]


def simulate(
    world: World, *, liked: str, disliked: str, seed: int, weights: FusionWeights, **kw: int
) -> dict[int, float]:
    """One listener: skips -> share of ``disliked`` in the first list ranked at that count."""
    rounds, max_skips, start = kw.get("rounds", 15), kw.get("max_skips", 10), kw.get("start", 3)
    style = {c.clip_id: c.style for c in world.clips}
    pool = sorted(c.clip_id for c in world.clips if c.style == liked)
    recent = [
        HistoryItem(track_id=t, type=InteractionType.PLAY, at_ms=NOW_MS)
        for t in random.Random(seed).sample(pool, start)
    ]
    shares: dict[int, float] = {}
    skips = 0
    for _ in range(rounds):
        shown = next_list(world, UserState(user_id="panel", recent=tuple(recent)), weights)
        share = sum(style[t] == disliked for t in shown) / max(len(shown), 1)
        for c in CHECKPOINTS:
            if skips >= c and c not in shares:
                shares[c] = share
        for t in shown:
            if style[t] == disliked and skips < max_skips:
                recent.append(HistoryItem(track_id=t, type=InteractionType.SKIP, at_ms=NOW_MS))
                skips += 1
        if played := next((t for t in shown if style[t] == liked), None):
            recent.append(HistoryItem(track_id=played, type=InteractionType.PLAY, at_ms=NOW_MS))
    # Never got that far: the disliked style had stopped being shown (its last list counts).
    return {c: shares.get(c, share) for c in CHECKPOINTS} | {-1: float(skips)}


def run_panel(vectors: Mapping[str, np.ndarray], clips: Sequence[Clip], seeds: int = 5) -> Any:
    """Every variant over every (liked, disliked) pair and seed; JSON-able summary."""
    world = build_world(clips, vectors)
    styles = sorted({c.style for c in clips})
    pairs = [(a, b) for a in styles for b in styles if a != b]
    out: dict[str, Any] = {}
    for name, (audio, artist, floor) in VARIANTS.items():
        # The artist signal (added after this panel) is off: in these clips the artist is
        # the package, which is the style, so it would measure the style, not the skips.
        w = DEFAULT_WEIGHTS.replace(
            artist=0.0,
            skip_audio_penalty=audio,
            skip_artist_penalty=artist,
            skip_audio_floor=floor,
        )
        runs = [
            simulate(world, liked=a, disliked=b, seed=s, weights=w)
            for a, b in pairs
            for s in range(seeds)
        ]
        out[name] = {
            "skip_audio_penalty": audio,
            "skip_artist_penalty": artist,
            "skip_audio_floor": floor,
            "share": {str(c): float(np.mean([r[c] for r in runs])) for c in CHECKPOINTS},
            "mean_skips": float(np.mean([r[-1] for r in runs])),
            "by_pair": {
                f"{a}>{b}": {
                    str(c): float(np.mean([r[c] for r in runs[i * seeds : (i + 1) * seeds]]))
                    for c in CHECKPOINTS
                }
                for i, (a, b) in enumerate(pairs)
            },
        }
    return {"simulation": True, "listeners": len(pairs) * seeds, "k": K, "variants": out}


def clip_vectors(audio_dir: Path, weights: Path, cache: Path | None) -> dict[str, np.ndarray]:
    """MusiCNN vectors of the clips (read from / written to ``cache``, an .npz, if given)."""
    clips = read_manifest(audio_dir)
    if cache is not None and cache.is_file():
        d = np.load(cache)
        unit = d["emb"] / np.linalg.norm(d["emb"], axis=1, keepdims=True)
        return dict(zip(d["ids"].tolist(), unit, strict=True))
    emb = represent(clips, weights)["musicnn"]
    if cache is not None:
        np.savez(cache, ids=np.array([c.clip_id for c in clips]), emb=emb)
    return {c.clip_id: emb[n] for n, c in enumerate(clips)}


def markdown(result: Any) -> str:
    """The panel as a Markdown table."""
    lines = [
        "| rule | after 0 skips | after 3 | after 10 | skips made |",
        "|---|---|---|---|---|",
    ]
    for name, v in result["variants"].items():
        s = v["share"]
        lines.append(
            f"| {name} | {s['0']:.3f} | {s['3']:.3f} | {s['10']:.3f} | {v['mean_skips']:.1f} |"
        )
    return "\n".join(lines)
