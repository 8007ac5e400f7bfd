"""The fusion rule: one scoring function for the streaming fusion agent and the offline hybrid.

A recommendation mixes per-candidate *signals*, each a non-negative amount of evidence where
0 means "this source says nothing about the item":

* ``audio`` -- cosine of the track's audio embedding to the listener's taste (offline: the
  content KNN cosine), negative values clipped to 0;
* ``collab`` -- co-plays with the listener's recent tracks (offline: ItemKNN);
* ``popularity`` -- plays net of skips (offline: training counts);
* ``fresh`` -- 1 for a recent upload, else 0 (no upload times offline);
* ``sequence`` -- the sequence model's probability relative to its top pick,
  ``exp(logit - max logit)`` (:func:`relative_probability`);
* ``familiar`` -- only in a list that may bring favourites back: how much and how lately the
  listener played a track of their recent window (:func:`familiarity`);
* ``artist`` -- content from metadata, for every track whose artist is known, audio or not:
  how many of the listener's recent plays are by the track's artist (offline: the artist
  one-hot content KNN over the same window, which after scaling by the maximum is the same
  number).

Each signal is **scaled by its maximum** over the candidates (:func:`scale_by_max`) and the
scaled signals are summed with the weights of a :class:`MixWeights` (:func:`fuse`).

Why max-scaling and not min-max: the fusion agent only sees each source's top candidates (the
ANN hits, the co-played tracks, the most popular, the sequence model's top 100), while the
offline protocol ranks the whole catalogue. With non-negative evidence and scaling by the
maximum, an item's scaled signal is the same in both as long as the source's best item is in
the pool (it always is: sources propose their best first); min-max would make it depend on the
weakest candidate that happened to be fetched. Offline, the min over a full catalogue row is 0
for every signal but popularity (whose minimum count is small), so for those signals the two
scalings coincide there; the sequence signal is where they differ, and the relative probability
is what the agent already used online.

A **skip** lowers what follows it (:func:`penalise`): each candidate's score loses
``SkipPenalty.audio`` times its *audio skip evidence* (:func:`audio_skip_evidence`: how much it
sounds like a recently skipped track) and ``SkipPenalty.artist`` times its *artist skip
evidence* (the recency weight of the newest skip of a track by its artist), and, where the
listener both kept and skipped tracks with audio, ``SkipPenalty.learnt`` times the *learnt skip
evidence* (``models.like_skip``: a per-listener logistic model of finish vs. skip on the audio
of those tracks: its skip probability ``1 - p_finish``). The penalty is subtracted after the
mix, not folded into a signal: a skip is evidence against an item, and the signals are
non-negative evidence for it.
"""

from __future__ import annotations

from collections.abc import Container, Hashable, Iterable, Mapping, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

SIGNALS: tuple[str, ...] = (
    "audio",
    "collab",
    "popularity",
    "fresh",
    "sequence",
    "familiar",
    "artist",
)
"""Signal names, in the order their weighted parts are summed (the later ones are 0 where
they do not apply -- ``familiar`` in a list of new tracks, ``artist`` with weight 0 -- and
then change neither sums nor reasons)."""


class MixWeights(BaseModel):
    """How much each scaled signal counts (non-negative; they need not sum to 1)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    audio: float = Field(0.0, ge=0.0)
    collab: float = Field(0.0, ge=0.0)
    popularity: float = Field(0.0, ge=0.0)
    fresh: float = Field(0.0, ge=0.0)
    sequence: float = Field(0.0, ge=0.0)
    familiar: float = Field(0.0, ge=0.0)
    artist: float = Field(0.0, ge=0.0)

    def weight(self, signal: str) -> float:
        """The weight of one signal of ``SIGNALS``."""
        if signal not in SIGNALS:
            raise KeyError(signal)
        return float(getattr(self, signal))


class SkipPenalty(BaseModel):
    """How much a unit of skip evidence lowers a fused score (0, 0: skips change no score)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    audio: float = Field(0.0, ge=0.0)
    """Score removed per unit of audio skip evidence."""
    artist: float = Field(0.0, ge=0.0)
    """Score removed per unit of artist skip evidence."""
    floor: float = Field(0.0, ge=0.0, lt=1.0)
    """Cosine to a skipped track at or below which a candidate gets no audio evidence."""
    learnt: float = Field(0.0, ge=0.0)
    """Score removed per unit of learnt skip evidence (``models.like_skip``)."""


NO_SKIP_PENALTY = SkipPenalty.model_validate({})


def familiarity(
    window: Sequence[tuple[Hashable, bool]], *, decay: float, cooldown: int
) -> dict[Hashable, float]:
    """Tracks of a listener's recent ``window`` (events oldest first, ``(track, positive)``:
    a play or like is positive, a skip is not) that may come back, with their evidence.

    A track's evidence is the sum of the recency weights of its plays (the newest event
    weighs 1, the one before ``decay``, ...: the taste vector's weights). A track may not
    come back while it is in the cool-down (among the last ``cooldown`` events) or while its
    newest event in the window is a skip ("never right after a skip"). The live lists and the
    offline counterpart both call this, on the same window length."""
    out: dict[Hashable, float] = {}
    blocked: set[Hashable] = set()
    for age, (track, positive) in enumerate(reversed(window)):
        if age < cooldown:
            blocked.add(track)
        if track in blocked:
            continue
        if not positive:
            if track not in out:  # newest event of the track is a skip
                blocked.add(track)
            continue
        out[track] = out.get(track, 0.0) + decay**age
    return out


def capped(
    order: Iterable[int],
    artists: Sequence[str | None],
    *,
    k: int,
    cap: int,
    exempt: Container[int] = (),
) -> list[int]:
    """The diversity rule: the first ``k`` entries of ``order`` with at most ``cap`` per
    artist (0: no cap; an entry without an artist is never capped). The ``exempt`` entries
    (the listener's favourites back in a `mix` list) are neither capped nor counted: the
    cap limits what the sources propose, so an album the listener keeps playing can come
    back whole. The agent's lists and the offline counterpart take their lists with it."""
    out: list[int] = []
    per: dict[str, int] = {}
    for n in order:
        a = artists[n]
        if cap and a and n not in exempt:
            if per.get(a, 0) >= cap:
                continue
            per[a] = per.get(a, 0) + 1
        out.append(n)
        if len(out) == k:
            break
    return out


def audio_skip_evidence(
    candidates: np.ndarray, skipped: np.ndarray, recency: np.ndarray, floor: float
) -> np.ndarray:
    """Per candidate (rows of ``candidates``), the strongest of the skipped tracks' (rows of
    ``skipped``) evidence against it: ``recency`` times the cosine
    rescaled from ``[floor, 1]`` to ``[0, 1]`` (at or below ``floor``: 0).

    Why a floor: unrelated tracks are far from orthogonal in an audio embedding (MusiCNN
    cosines between styles are ~0.3-0.7), so the raw cosine would penalise almost everything
    a little; above the floor, only what sounds like the skip loses score."""
    c = _unit_rows(candidates)
    if c.size == 0 or len(skipped) == 0:
        return np.zeros(len(c))
    cos = c @ _unit_rows(skipped).T
    ev = np.clip((cos - floor) / (1.0 - floor), 0.0, 1.0) * np.asarray(recency, dtype=np.float64)
    out: np.ndarray = ev.max(axis=1)
    return out


def _unit_rows(m: np.ndarray) -> np.ndarray:
    x = np.asarray(m, dtype=np.float64)
    n = np.linalg.norm(x, axis=-1, keepdims=True) if x.size else np.ones(x.shape[:-1] + (1,))
    out: np.ndarray = x / np.where(n > 0, n, 1.0)
    return out


def penalise(
    total: np.ndarray,
    audio: np.ndarray,
    artist: np.ndarray,
    penalty: SkipPenalty,
    learnt: np.ndarray | None = None,
) -> np.ndarray:
    """Fused scores lowered by the skip evidence (same shapes; evidence in [0, 1])."""
    use_learnt = learnt if learnt is not None and penalty.learnt > 0.0 else None
    if penalty.audio == 0.0 and penalty.artist == 0.0 and use_learnt is None:
        return total  # today's rule, the same floats
    against = penalty.audio * audio + penalty.artist * artist
    if use_learnt is not None:
        # Added last, so with the learnt weight 0 the served rule keeps the same floats.
        against = against + penalty.learnt * use_learnt
    out: np.ndarray = total - against
    return out


def scale_by_max(values: np.ndarray) -> np.ndarray:
    """Negative values clipped to 0, then each row (last axis) divided by its maximum; an
    all-zero row stays zero."""
    x = np.maximum(np.asarray(values, dtype=np.float64), 0.0)
    m = x.max(axis=-1, keepdims=True) if x.size else np.zeros(x.shape[:-1] + (1,))
    out: np.ndarray = x / np.where(m > 0, m, 1.0)
    return out


def relative_probability(logits: np.ndarray) -> np.ndarray:
    """The sequence signal: ``exp(logit - max logit)`` per row, i.e. the model's softmax
    probability of each item divided by that of its top pick (in (0, 1], the top pick 1)."""
    x = np.asarray(logits, dtype=np.float64)
    out: np.ndarray = np.exp(np.minimum(0.0, x - x.max(axis=-1, keepdims=True)))
    return out


def scale_signals(signals: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every signal scaled by its maximum (rows = lists, last axis = candidates)."""
    unknown = set(signals) - set(SIGNALS)
    if unknown:
        raise KeyError(f"unknown signals {sorted(unknown)}; known: {SIGNALS}")
    return {name: scale_by_max(v) for name, v in signals.items()}


def weighted_parts(scaled: Mapping[str, np.ndarray], weights: MixWeights) -> dict[str, np.ndarray]:
    """Each present signal's contribution ``weight * scaled`` (for scores and reasons)."""
    return {s: weights.weight(s) * scaled[s] for s in SIGNALS if s in scaled}


def mix(scaled: Mapping[str, np.ndarray], weights: MixWeights) -> np.ndarray:
    """The score: the weighted parts summed in ``SIGNALS`` order (signals already scaled)."""
    parts = list(weighted_parts(scaled, weights).values())
    if not parts:
        raise ValueError("no signals to fuse")
    total = parts[0]
    for p in parts[1:]:
        total = total + p
    return np.asarray(total, dtype=np.float64)


def fuse(signals: Mapping[str, np.ndarray], weights: MixWeights) -> np.ndarray:
    """Scores of the candidates (last axis): raw signals scaled by their maxima, then mixed.
    A missing signal counts as all zero."""
    return mix(scale_signals(signals), weights)
