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
had stopped being shown), for today's rule (no skip penalty) and each penalty tried, with each
rule's paired difference from the served rule (same listeners; mean and standard error).

"learnt" rules add the per-listener like/skip model (``models.like_skip``: a logistic model of
finish vs. skip fitted on the audio of the listener's kept and skipped clips) as evidence
against what it expects to be skipped.

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


def _rule(
    *,
    audio: float = 0.0,
    artist: float = 0.0,
    floor: float = 0.0,
    learnt: float = 0.0,
    l2: float = 0.03,
) -> dict[str, float]:
    """A rule's parameters as ``models.fusion_weights.Taste`` fields (all 0: today's rule)."""
    return {
        "skip_audio_penalty": audio,
        "skip_artist_penalty": artist,
        "skip_audio_floor": floor,
        "like_skip_penalty": learnt,
        "like_skip_l2": l2,
    }


#: rules tried: name -> their parameters ("learnt": the per-listener like/skip model,
#: models.like_skip, L2 penalty 0.03 unless named)
VARIANTS: dict[str, dict[str, float]] = {
    "today": _rule(),
    "audio 0.25": _rule(audio=0.25),
    "audio 0.5": _rule(audio=0.5),
    "audio 0.25 floor 0.5": _rule(audio=0.25, floor=0.5),
    "audio 0.5 floor 0.5": _rule(audio=0.5, floor=0.5),
    "audio 1.0 floor 0.5": _rule(audio=1.0, floor=0.5),
    "artist 0.1": _rule(artist=0.1),
    "artist 0.25": _rule(artist=0.25),
    "audio 0.5 floor 0.5 + artist 0.1": _rule(audio=0.5, artist=0.1, floor=0.5),
    "learnt 0.5": _rule(learnt=0.5),
    "learnt 1.0": _rule(learnt=1.0),
    "learnt 2.0": _rule(learnt=2.0),
    "learnt 1.0 l2 0.01": _rule(learnt=1.0, l2=0.01),
    "audio 0.5 floor 0.5 + learnt 0.5": _rule(audio=0.5, floor=0.5, learnt=0.5),
    "audio 0.5 floor 0.5 + artist 0.1 + learnt 0.5": _rule(
        audio=0.5, artist=0.1, floor=0.5, learnt=0.5
    ),
    "audio 0.5 floor 0.5 + artist 0.1 + learnt 1.0": _rule(
        audio=0.5, artist=0.1, floor=0.5, learnt=1.0
    ),
}
#: the served rule (fusion-20261203130000's skip penalty), what the others are compared with
SERVED = "audio 0.5 floor 0.5 + artist 0.1"


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


def run_panel(
    vectors: Mapping[str, np.ndarray], clips: Sequence[Clip], seeds: int = 5, first_seed: int = 0
) -> Any:
    """Every variant over every (liked, disliked) pair and seed (``first_seed`` on: other
    seeds give other starting plays, a panel the variants were not chosen on); JSON-able."""
    world = build_world(clips, vectors)
    styles = sorted({c.style for c in clips})
    pairs = [(a, b) for a in styles for b in styles if a != b]
    runs: dict[str, np.ndarray] = {}
    for name, rule in VARIANTS.items():
        # The artist signal (added after this panel) is off: in these clips the artist is
        # the package, which is the style, so it would measure the style, not the skips.
        w = DEFAULT_WEIGHTS.replace(artist=0.0, **rule)
        sims = [
            simulate(world, liked=a, disliked=b, seed=s, weights=w)
            for a, b in pairs
            for s in range(first_seed, first_seed + seeds)
        ]
        # Rows: listeners (pair-major); columns: the checkpoints, then the skips made.
        runs[name] = np.array([[r[c] for c in (*CHECKPOINTS, -1)] for r in sims])
    out = {
        name: _summary(VARIANTS[name], r, runs[SERVED], [f"{a}>{b}" for a, b in pairs])
        for name, r in runs.items()
    }
    return {
        "simulation": True,
        "listeners": len(pairs) * seeds,
        "seeds": [first_seed, first_seed + seeds],
        "k": K,
        "variants": out,
    }


def _summary(
    rule: Mapping[str, float], r: np.ndarray, served: np.ndarray, pairs: Sequence[str]
) -> dict[str, Any]:
    """One variant's figures: mean shares, skips, per pair, and the paired difference from
    the served rule per checkpoint (mean and standard error over the same listeners)."""
    d = r[:, : len(CHECKPOINTS)] - served[:, : len(CHECKPOINTS)]
    se = d.std(axis=0, ddof=1) / np.sqrt(len(d)) if len(d) > 1 else np.zeros(len(CHECKPOINTS))
    per = len(r) // len(pairs)
    return {
        **rule,
        "share": {str(c): float(r[:, n].mean()) for n, c in enumerate(CHECKPOINTS)},
        "mean_skips": float(r[:, -1].mean()),
        "minus_served": {
            str(c): {"mean": float(d[:, n].mean()), "se": float(se[n])}
            for n, c in enumerate(CHECKPOINTS)
        },
        "by_pair": {
            p: {
                str(c): float(r[i * per : (i + 1) * per, n].mean())
                for n, c in enumerate(CHECKPOINTS)
            }
            for i, p in enumerate(pairs)
        },
    }


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
    """The panel as a Markdown table (the difference from the served rule: mean +- SE)."""
    lines = [
        "| rule | after 0 skips | after 3 | after 10 | skips made | after 3 - served "
        "| after 10 - served |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, v in result["variants"].items():
        s, d = v["share"], v["minus_served"]
        diff = [f"{d[c]['mean']:+.3f} ± {d[c]['se']:.3f}" for c in ("3", "10")]
        lines.append(
            f"| {name} | {s['0']:.3f} | {s['3']:.3f} | {s['10']:.3f} | {v['mean_skips']:.1f} "
            f"| {diff[0]} | {diff[1]} |"
        )
    return "\n".join(lines)
