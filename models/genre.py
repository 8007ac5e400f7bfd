"""A track's genre from its audio: MusiCNN's pooled MSD tag probabilities -> (genre, confidence).

Pure (numpy only), the one home of the table that says which of the encoder's tags name a
genre and which fold together. The MSD top-50 tags mix genres with moods, decades and
voices; only the genre tags vote, grouped into :data:`GENRES`:

* a genre's **score** is the highest probability among its tags, not their sum: the tags
  are independent sigmoid outputs that fire together on the same audio ("rock", "classic
  rock", "hard rock"...), so a sum would favour the genres that merely have more tags
  (rock has nine, jazz one);
* the **label** is the genre of the highest score; a tie goes to the genre listed first
  (a fixed order, so the same audio always gets the same label);
* the **confidence** is the winner's share of all genre scores, in (0, 1]: 1 when no other
  genre scores at all, ``1 / len(GENRES)`` when all score the same. It says how clearly one
  genre stands out, not how sure the tagger is that it hears music of that genre at all.

No genre tag with a finite positive probability (all zero, NaN, or an encoder whose tags
name none of these genres) gives :data:`UNKNOWN`: an empty label with confidence 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Genre -> the MSD top-50 tags (models.convert_musicnn.MSD_TAGS, spelled as there) that name
# it. Left out on purpose, as not genres: moods (beautiful, Mellow, chill, chillout, sad,
# happy, sexy, catchy, party, easy listening), decades (60s ... 00s, oldies), voices and
# instruments (female/male vocalists, guitar, acoustic, instrumental).
GENRES: dict[str, tuple[str, ...]] = {
    "rock": (
        "rock",
        "alternative",
        "alternative rock",
        "indie",
        "indie rock",
        "classic rock",
        "hard rock",
        "Progressive rock",
        "punk",
    ),
    "metal": ("metal", "heavy metal"),
    "pop": ("pop", "indie pop"),
    "electronic": ("electronic", "electronica", "electro", "dance", "House"),
    "ambient": ("ambient",),
    "experimental": ("experimental",),
    "jazz": ("jazz",),
    "soul": ("soul", "rnb", "funk"),
    "blues": ("blues",),
    "folk": ("folk",),
    "country": ("country",),
    "hip-hop": ("Hip-Hop",),
}


@dataclass(frozen=True, kw_only=True)
class GenrePrediction:
    """A predicted genre (``""`` when unknown) and its confidence in [0, 1]."""

    label: str
    confidence: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"confidence must be in [0, 1], not {self.confidence}")
        if not self.label and self.confidence:
            raise ValueError("an unknown genre has confidence 0")


UNKNOWN = GenrePrediction(label="", confidence=0.0)


def genre_scores(probs: Sequence[float] | np.ndarray, tag_names: Sequence[str]) -> dict[str, float]:
    """Each genre's score (the max over its tags present in ``tag_names``), in
    :data:`GENRES` order; genres none of whose tags the encoder has are left out. A NaN or
    negative probability counts as 0. Names past the probabilities (and probabilities past
    the names) are ignored, as ``pool_track`` ignores them: a card whose names do not match
    its model's outputs must not fail every upload."""
    p = np.asarray(probs, dtype=np.float64).reshape(-1)
    p = np.where(np.isfinite(p) & (p > 0), p, 0.0)
    index = {name: i for i, name in enumerate(tag_names) if i < p.shape[0]}
    scores: dict[str, float] = {}
    for genre, tags in GENRES.items():
        present = [index[t] for t in tags if t in index]
        if present:
            scores[genre] = float(p[present].max())
    return scores


def predict_genre(probs: Sequence[float] | np.ndarray, tag_names: Sequence[str]) -> GenrePrediction:
    """The genre of one track's pooled tag probabilities (see the module docstring)."""
    scores = genre_scores(probs, tag_names)
    total = math.fsum(scores.values())
    if not total > 0:
        return UNKNOWN
    # max() keeps the first of equal scores: GENRES order breaks ties.
    label = max(scores, key=lambda g: scores[g])
    return GenrePrediction(label=label, confidence=min(1.0, scores[label] / total))


def track_genre(tags: np.ndarray, tag_names: Sequence[str]) -> GenrePrediction:
    """The genre of one track from its per-patch tag probabilities ``[n_patches, n_tags]``,
    pooled as ``models.audio_input.pool_track`` pools them (mean over patches)."""
    t = np.asarray(tags, dtype=np.float64)
    if t.ndim != 2 or t.shape[0] == 0:
        return UNKNOWN
    return predict_genre(t.mean(axis=0), tag_names)
