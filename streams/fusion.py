"""Fusion: how a listener's history becomes signals, and the weights that mix them (pure).

Following DMM-HyRec's serving design, the user vector is recomputed per request from the
listener's recent plays (:func:`user_vector`) and an ANN search over precomputed track
embeddings gives the audio candidates; the collaborative signal is learnt online from
co-plays within sessions (:func:`collab_scores`), and popularity covers listeners with no
usable history. When a trained user (sequence) encoder is served, its top-N next tracks
join as a ``sequence`` signal (``SEQUENCE_WEIGHTS``); without one the weights are
``DEFAULT_WEIGHTS`` and the ranking is exactly the training-free one.

The scoring itself is ``models.fusion_rule`` (each signal scaled by its maximum over the
candidates, then mixed), the same rule the offline ``hybrid`` models rank with, applied to a
whole batch by :mod:`streams.rank`; the default mixes are the committed fusion-weights
artifact (``models.fusion_weights.builtin``).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from models.fusion_rule import MixWeights, SkipPenalty
from models.fusion_weights import Taste, builtin
from schemas.events import InteractionType, ListKind
from streams.state import HistoryItem

_BASE = builtin().base.weights
_TASTE = builtin().taste
_MIX_FIELDS = frozenset(MixWeights.model_fields)
_TASTE_FIELDS = frozenset(Taste.model_fields)


class FusionWeights:
    """What the ranking reads of a fusion-weights artifact: one of its mixes (how the scaled
    signals are summed, ``MixWeights``) and its taste parameters (how the listener's history
    becomes a taste vector, what counts as fresh, what a skip costs: ``Taste``).

    It wraps the two artifact models, not a copy of their fields: ``w.audio`` reads the mix,
    ``w.recency_decay`` the taste. Keyword fields given to the constructor override the
    wrapped models' (``FusionWeights(audio=0.6)``: the built-in mix with another audio weight).
    Frozen and hashable, so what is derived from it is made once per weights.
    """

    __slots__ = ("mix_weights", "taste")
    mix_weights: MixWeights
    taste: Taste

    def __init__(
        self, *, mix_weights: MixWeights = _BASE, taste: Taste = _TASTE, **fields: float
    ) -> None:
        mix_f = {k: v for k, v in fields.items() if k in MixWeights.model_fields}
        taste_f = {k: v for k, v in fields.items() if k in Taste.model_fields}
        if unknown := set(fields) - set(mix_f) - set(taste_f):
            raise TypeError(f"unknown fusion weights {sorted(unknown)}")
        if mix_f:
            mix_weights = MixWeights.model_validate({**mix_weights.model_dump(), **mix_f})
        if taste_f:
            taste = Taste.model_validate({**taste.model_dump(), **taste_f})
        object.__setattr__(self, "mix_weights", mix_weights)
        object.__setattr__(self, "taste", taste)

    def __getattr__(self, name: str) -> Any:
        # Only called for names that are not attributes: a signal's weight or a taste field.
        # (Sets made once: pydantic's ``model_fields`` is a property, slow on a hot path.)
        if name in _MIX_FIELDS:
            return getattr(self.mix_weights, name)
        if name in _TASTE_FIELDS:
            return getattr(self.taste, name)
        raise AttributeError(f"FusionWeights has no {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("FusionWeights is frozen")

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, FusionWeights)
            and self.mix_weights == other.mix_weights
            and self.taste == other.taste
        )

    def __hash__(self) -> int:
        return hash((self.mix_weights, self.taste))

    def __repr__(self) -> str:
        return f"FusionWeights(mix_weights={self.mix_weights!r}, taste={self.taste!r})"

    @classmethod
    def from_mix(cls, mix: MixWeights, taste: Taste | None = None) -> FusionWeights:
        """Weights of an artifact (``models.fusion_weights``): one of its mixes and its taste
        parameters (the built-in artifact's when not given)."""
        return cls(mix_weights=mix, taste=taste or _TASTE)

    def replace(self, **fields: float) -> FusionWeights:
        """These weights with some fields changed (by name, mix or taste)."""
        return FusionWeights(mix_weights=self.mix_weights, taste=self.taste, **fields)

    def mix(self) -> MixWeights:
        """The signal weights alone (what ``models.fusion_rule.fuse`` takes)."""
        return self.mix_weights

    def for_kind(self, kind: ListKind) -> FusionWeights:
        """The weights a list of ``kind`` ranks with: a `mix` list weighs the familiar
        signal by ``familiar_weight``; a `new` list has no familiar candidates."""
        return _for_kind(self, kind)

    @property
    def skip_penalty(self) -> SkipPenalty:
        """The skip penalty's parameters (``models.fusion_rule.penalise``), made once."""
        return _skip_of(self)


# The mixes are the committed fusion-weights artifact (models/artifacts/fusion/, provenance
# inside): the validation choices of the offline "hybrid" / "hybrid-sasrec" (docs/results.md,
# "Served configuration") with a small popularity weight for listeners with no history yet.
DEFAULT_WEIGHTS = FusionWeights.from_mix(builtin().base.weights, builtin().taste)
SEQUENCE_WEIGHTS = FusionWeights.from_mix(builtin().sequence.weights, builtin().taste)


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
    weights = recency_weights(len(recent), w.recency_decay).tolist()
    rows: list[np.ndarray] = []
    pos_w: list[float] = []
    neg_w: list[float] = []
    for h, wt in zip(recent, weights, strict=True):
        e = embeddings.get(h.track_id)
        if e is None:
            continue
        rows.append(e)
        if h.type is InteractionType.SKIP:
            pos_w.append(0.0)
            neg_w.append(wt)
        else:
            pos_w.append(wt * (w.like_boost if h.type is InteractionType.LIKE else 1.0))
            neg_w.append(0.0)
    if not any(pos_w):
        return None
    # One weighted sum over the stacked vectors (a numpy call per event was a tenth of the
    # candidates' time).
    m = np.asarray(rows, dtype=np.float64)
    u = _unit(np.asarray(pos_w) @ m)
    if u is None:
        return None
    if any(neg_w) and (nu := _unit(np.asarray(neg_w) @ m)) is not None:
        u = _unit(u - w.skip_weight * nu)
    return None if u is None else u.astype(np.float32)


def collab_scores(
    recent: Sequence[HistoryItem],
    coplays: Mapping[str, Mapping[str, int]],
    w: FusionWeights = DEFAULT_WEIGHTS,
) -> tuple[dict[str, float], dict[str, str]]:
    """(candidate -> recency-weighted co-play count, candidate -> the history track whose
    co-plays gave it the most)."""
    weights = recency_weights(len(recent), w.recency_decay).tolist()
    # A track played several times in the window counts once with its summed weight: the
    # sum is the same, and its co-plays are walked once.
    played: dict[str, float] = {}
    for h, wt in zip(recent, weights, strict=True):
        if h.type is not InteractionType.SKIP:
            played[h.track_id] = played.get(h.track_id, 0.0) + wt
    # Flat dicts and Python floats, returned as they are (no pair per candidate): this loop
    # runs for every listener refresh over ~1,000 co-played tracks.
    score: dict[str, float] = {}
    best: dict[str, float] = {}
    via: dict[str, str] = {}
    for tid, wt in played.items():
        for other, cnt in coplays.get(tid, {}).items():
            s = wt * cnt
            prev = score.get(other)
            if prev is None:
                score[other] = best[other] = s
                via[other] = tid
            else:
                score[other] = prev + s
                if s > best[other]:
                    best[other] = s
                    via[other] = tid
    return score, via


def track_label(title: str, artist: str) -> str:
    """How a reason names a track: "<title> by <artist>", the title alone, or ""."""
    if not title:
        return ""
    return f"{title} by {artist}" if artist else title


@functools.lru_cache(maxsize=64)
def _for_kind(w: FusionWeights, kind: ListKind) -> FusionWeights:
    # Made once per weights and kind: every batch asks.
    return w.replace(familiar=w.taste.familiar_weight) if kind is ListKind.MIX else w


@functools.lru_cache(maxsize=64)
def _skip_of(w: FusionWeights) -> SkipPenalty:
    return SkipPenalty(
        audio=w.skip_audio_penalty,
        artist=w.skip_artist_penalty,
        floor=w.skip_audio_floor,
        learnt=w.like_skip_penalty,
    )
