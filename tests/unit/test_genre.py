"""Genre from MusiCNN's tags (models/genre.py): the table, the rule and its boundaries."""

from __future__ import annotations

import numpy as np
import pytest

from models.convert_musicnn import MSD_TAGS
from models.genre import (
    GENRES,
    UNKNOWN,
    GenrePrediction,
    genre_scores,
    predict_genre,
    track_genre,
)


def probs(**by_tag: float) -> np.ndarray:
    """MSD tag probabilities: the named ones (underscores for spaces), the rest 0."""
    p = np.zeros(len(MSD_TAGS))
    for name, v in by_tag.items():
        p[MSD_TAGS.index(name.replace("_", " "))] = v
    return p


def test_every_genre_tag_is_an_msd_tag_and_belongs_to_one_genre() -> None:
    tags = [t for ts in GENRES.values() for t in ts]
    assert set(tags) <= set(MSD_TAGS)  # a misspelt tag would silently never vote
    assert len(tags) == len(set(tags))


def test_the_strongest_genre_wins_and_its_tags_fold_together() -> None:
    got = predict_genre(probs(hard_rock=0.6, electro=0.2, sad=0.9), MSD_TAGS)
    assert got.label == "rock"  # "sad" is a mood: it does not vote
    assert got.confidence == pytest.approx(0.6 / 0.8)


def test_a_genre_scores_its_best_tag_not_the_sum_of_its_tags() -> None:
    # Nine rock tags at 0.3 do not outvote one jazz tag at 0.4.
    rock = {t.replace(" ", "_"): 0.3 for t in GENRES["rock"]}
    got = predict_genre(probs(jazz=0.4, **rock), MSD_TAGS)
    assert got.label == "jazz" and got.confidence == pytest.approx(0.4 / 0.7)


@pytest.mark.parametrize(
    "p",
    [
        np.zeros(len(MSD_TAGS)),
        np.full(len(MSD_TAGS), np.nan),
        probs(sad=0.9, guitar=0.8),  # only non-genre tags
        -np.ones(len(MSD_TAGS)),
    ],
)
def test_no_genre_evidence_is_unknown(p: np.ndarray) -> None:
    assert predict_genre(p, MSD_TAGS) == UNKNOWN
    assert (UNKNOWN.label, UNKNOWN.confidence) == ("", 0.0)


def test_nan_counts_as_zero_beside_real_evidence() -> None:
    p = probs(jazz=0.5)
    p[MSD_TAGS.index("rock")] = np.nan
    assert predict_genre(p, MSD_TAGS) == GenrePrediction(label="jazz", confidence=1.0)


def test_ties_go_to_the_genre_listed_first_and_share_the_confidence() -> None:
    got = predict_genre(probs(jazz=0.5, rock=0.5), MSD_TAGS)
    assert got.label == "rock" and got.confidence == pytest.approx(0.5)
    flat = predict_genre(np.full(len(MSD_TAGS), 0.2), MSD_TAGS)
    assert flat.label == next(iter(GENRES)) and flat.confidence == pytest.approx(1 / len(GENRES))


def test_missing_tag_names_leave_their_genres_out() -> None:
    names = ("jazz", "guitar", "House")
    assert genre_scores([0.1, 0.9, 0.3], names) == {"electronic": 0.3, "jazz": 0.1}
    assert predict_genre([0.1, 0.9, 0.3], names).label == "electronic"
    assert predict_genre([0.9, 0.9], ("x", "y")) == UNKNOWN  # an encoder without genre tags
    assert predict_genre([0.9], ()) == UNKNOWN
    # Names past the outputs are ignored, as pool_track ignores them.
    assert predict_genre([0.2], ("folk", "jazz")) == GenrePrediction(label="folk", confidence=1.0)


def test_a_track_pools_its_patches_before_the_rule() -> None:
    patches = np.stack([probs(jazz=0.8), probs(jazz=0.0, folk=0.6)])
    got = track_genre(patches, MSD_TAGS)
    assert got.label == "jazz" and got.confidence == pytest.approx(0.4 / 0.7)
    assert track_genre(np.zeros((0, len(MSD_TAGS))), MSD_TAGS) == UNKNOWN


def test_a_prediction_keeps_its_invariants() -> None:
    with pytest.raises(ValueError):
        GenrePrediction(label="rock", confidence=1.5)
    with pytest.raises(ValueError):
        GenrePrediction(label="", confidence=0.3)
