"""Fusion ranking: user vector, candidate scoring, diversity and reasons (pure).

The fusion agent gathers the inputs (user state, audio neighbours from Milvus,
co-play and popularity stats from the track table) and calls :func:`rank`.
Following DMM-HyRec's serving design, the user vector is recomputed per request
and an ANN search over precomputed track embeddings gives the audio candidates;
the collaborative signal is learnt online from co-plays within sessions, and
popularity covers listeners with no usable history. When a trained user (sequence)
encoder is served, its top-N next tracks join as a ``sequence`` component
(``SEQUENCE_WEIGHTS``); without one the weights are ``DEFAULT_WEIGHTS`` and the ranking is
exactly the training-free one.

The scoring itself is ``models.fusion_rule.fuse`` (each signal scaled by its maximum over the
candidates, then mixed), the same function the offline ``hybrid`` models rank with; the
default mixes are the committed fusion-weights artifact (``models.fusion_weights.builtin``).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from models.fusion_rule import MixWeights, scale_signals, weighted_parts
from models.fusion_weights import builtin
from schemas.events import InteractionType, RecommendedItem
from streams.state import HistoryItem

_BASE = builtin().base.weights


@dataclass(frozen=True)
class FusionWeights:
    """How the signals are mixed (each scaled by its maximum first) and how the listener's
    taste vector is built. The mix defaults are the built-in artifact's ``base`` mix."""

    audio: float = _BASE.audio  # similarity of the track's audio to the listener's taste
    collab: float = _BASE.collab  # co-played with the listener's recent tracks
    popularity: float = _BASE.popularity  # plays net of skips, across all listeners
    fresh: float = _BASE.fresh  # bonus for a track uploaded recently (item cold start)
    sequence: float = _BASE.sequence  # the served sequence model's score (0: not served)
    recency_decay: float = 0.85  # weight of the n-th most recent event is decay**n
    like_boost: float = 2.0  # a like counts this many plays in the user vector
    skip_weight: float = 0.5  # how hard skipped audio pushes the user vector away
    fresh_window_ms: int = 24 * 3600 * 1000  # "recent" upload window

    @classmethod
    def from_mix(cls, mix: MixWeights, **taste: float) -> FusionWeights:
        """Weights with an artifact's mix (``models.fusion_weights``); ``taste`` overrides the
        user-vector fields (``recency_decay`` ...)."""
        return cls(**mix.model_dump(), **taste)  # type: ignore[arg-type]

    def mix(self) -> MixWeights:
        """The signal weights alone (what ``models.fusion_rule.fuse`` takes)."""
        return MixWeights(
            audio=self.audio,
            collab=self.collab,
            popularity=self.popularity,
            fresh=self.fresh,
            sequence=self.sequence,
        )


# The mixes are the committed fusion-weights artifact (models/artifacts/fusion/, provenance
# inside): the validation choices of the offline "hybrid" / "hybrid-sasrec" (docs/results.md,
# "Served configuration") with a small popularity weight for listeners with no history yet.
DEFAULT_WEIGHTS = FusionWeights.from_mix(builtin().base.weights)
SEQUENCE_WEIGHTS = FusionWeights.from_mix(builtin().sequence.weights)


@dataclass(frozen=True)
class Candidate:
    """A track that one of the sources proposed, with what each source said."""

    track_id: str
    artist_id: str | None = None
    audio: float = 0.0  # raw cosine similarity to the user vector
    collab: float = 0.0  # weighted co-play count
    popularity: float = 0.0  # plays net of skips
    fresh: bool = False
    similar_to: str | None = None  # played track whose audio is closest (audio reason)
    coplayed_with: str | None = None  # played track it was co-played with (collab reason)
    sequence: float = 0.0  # sequence model's score relative to its best, in [0, 1]


def _unit(v: np.ndarray) -> np.ndarray | None:
    n = float(np.linalg.norm(v))
    return None if n == 0.0 or not np.isfinite(n) else v / n


def recency_weights(n: int, decay: float) -> np.ndarray:
    """Weights for n events oldest first: the newest gets 1, the one before decay, ..."""
    return np.asarray(decay ** np.arange(n - 1, -1, -1), dtype=np.float64)


def user_vector(
    recent: Sequence[HistoryItem],
    embeddings: Mapping[str, np.ndarray],
    w: FusionWeights = DEFAULT_WEIGHTS,
) -> np.ndarray | None:
    """Recency-weighted taste vector; skips pull it away. None without any played audio."""
    if not recent:
        return None
    weights = recency_weights(len(recent), w.recency_decay)
    pos: np.ndarray | None = None
    neg: np.ndarray | None = None
    for h, wt in zip(recent, weights, strict=True):
        e = embeddings.get(h.track_id)
        if e is None:
            continue
        e = np.asarray(e, dtype=np.float64)
        if h.type is InteractionType.SKIP:
            neg = wt * e if neg is None else neg + wt * e
        else:
            k = wt * (w.like_boost if h.type is InteractionType.LIKE else 1.0)
            pos = k * e if pos is None else pos + k * e
    if pos is None:
        return None
    u = _unit(pos)
    if u is None:
        return None
    if neg is not None and (nu := _unit(neg)) is not None:
        u = _unit(u - w.skip_weight * nu)
    return None if u is None else u.astype(np.float32)


def collab_scores(
    recent: Sequence[HistoryItem],
    coplays: Mapping[str, Mapping[str, int]],
    w: FusionWeights = DEFAULT_WEIGHTS,
) -> dict[str, tuple[float, str]]:
    """Candidate -> (recency-weighted co-play count, strongest history track)."""
    # Two flat dicts and Python floats: this loop runs for every listener refresh.
    score: dict[str, float] = {}
    via: dict[str, str] = {}
    weights = recency_weights(len(recent), w.recency_decay).tolist()
    for h, wt in zip(recent, weights, strict=True):
        if h.type is InteractionType.SKIP:
            continue
        tid = h.track_id
        for other, cnt in coplays.get(tid, {}).items():
            s = wt * cnt
            prev = score.get(other)
            if prev is None:
                score[other] = s
                via[other] = tid
            else:
                if prev < s:
                    via[other] = tid
                score[other] = prev + s
    return {t: (sc, via[t]) for t, sc in score.items()}


def track_label(title: str, artist: str) -> str:
    """How a reason names a track: "<title> by <artist>", the title alone, or ""."""
    if not title:
        return ""
    return f"{title} by {artist}" if artist else title


def _reason(c: Candidate, parts: dict[str, float], titles: Mapping[str, str]) -> str:
    def name(t: str | None) -> str:
        return titles.get(t or "", t or "a track you played")

    best = max(parts, key=lambda p: parts[p])
    if parts[best] <= 0:
        return "new upload" if c.fresh else "popular on Resonate"
    if best == "audio":
        return f"sounds like {name(c.similar_to)}, which you played"
    if best == "collab":
        return f"listeners who played {name(c.coplayed_with)} also played this"
    if best == "fresh":
        return "new upload that matches your taste"
    if best == "sequence":
        return "fits what you have been playing"
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
    """Fuse, drop heard tracks, apply the per-artist cap and explain each item."""
    merged: dict[str, Candidate] = {}
    for c in candidates:
        if c.track_id in exclude:
            continue
        prev = merged.get(c.track_id)
        merged[c.track_id] = c if prev is None else _merge(prev, c)
    pool = list(merged.values())
    if not pool:
        return []
    parts_of = weighted_parts(scale_signals(candidate_signals(pool)), _mix_of(w))
    # In SIGNALS order, sequence last: without a sequence model it is 0 and changes neither
    # sums nor reasons. Summed as arrays (the same float additions, in the same order, as
    # summing each candidate's parts); parts are looked at only for the items emitted.
    columns = list(parts_of.values())
    total = columns[0]
    for col in columns[1:]:
        total = total + col
    totals = total.tolist()
    # Ties (e.g. cold users with equal popularity) break on track id: deterministic output.
    order = sorted(range(len(pool)), key=lambda n: (-totals[n], pool[n].track_id))
    out: list[RecommendedItem] = []
    per_artist: dict[str, int] = {}
    for n in order:
        c = pool[n]
        if c.artist_id:
            if per_artist.get(c.artist_id, 0) >= max_per_artist:
                continue
            per_artist[c.artist_id] = per_artist.get(c.artist_id, 0) + 1
        parts = {name: float(v[n]) for name, v in parts_of.items()}
        out.append(
            RecommendedItem(
                track_id=c.track_id,
                score=round(totals[n], 6),
                reason=_reason(c, parts, titles or {}),
            )
        )
        if len(out) == k:
            break
    return out


@functools.lru_cache(maxsize=64)
def _mix_of(w: FusionWeights) -> MixWeights:
    # A validated model per call would cost more than the ranking it feeds.
    return w.mix()


def candidate_signals(pool: Sequence[Candidate]) -> dict[str, np.ndarray]:
    """The raw signals of ``models.fusion_rule`` per candidate (one array each)."""
    return {
        "audio": np.array([c.audio for c in pool], dtype=np.float64),
        "collab": np.array([c.collab for c in pool], dtype=np.float64),
        "popularity": np.array([c.popularity for c in pool], dtype=np.float64),
        "fresh": np.array([float(c.fresh) for c in pool], dtype=np.float64),
        "sequence": np.array([c.sequence for c in pool], dtype=np.float64),
    }


def _merge(a: Candidate, b: Candidate) -> Candidate:
    """One track proposed by several sources: keep the strongest value of each."""
    return Candidate(
        track_id=a.track_id,
        artist_id=a.artist_id or b.artist_id,
        audio=max(a.audio, b.audio),
        collab=max(a.collab, b.collab),
        popularity=max(a.popularity, b.popularity),
        fresh=a.fresh or b.fresh,
        similar_to=a.similar_to or b.similar_to,
        coplayed_with=a.coplayed_with or b.coplayed_with,
        sequence=max(a.sequence, b.sequence),
    )
