"""Audio retrieval figures: the metrics, the leave-one-out protocol and the random baseline."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.audio_eval import Clip, cosine_ranker, random_expectation, retrieval

CLIPS = [
    Clip(clip_id=f"{t}_{k}", track_id=t, style=s, path=Path(f"{t}_{k}.ogg"))
    for t, s in [("a", "rock"), ("b", "rock"), ("c", "pop"), ("d", "pop"), ("e", "pop")]
    for k in range(2)
]


def vectors(noise: float, seed: int = 0) -> np.ndarray:
    """Same track -> nearly the same vector; styles on separate axes."""
    rng = np.random.default_rng(seed)
    base = {
        "a": [1, 0.2, 0],
        "b": [1, -0.2, 0],
        "c": [0, 0.2, 1],
        "d": [0, -0.2, 1],
        "e": [0, 0, 1],
    }
    v = np.array([base[c.track_id] for c in CLIPS], dtype=float)
    v = v + noise * rng.normal(size=v.shape)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_perfect_audio_finds_the_other_clip_and_the_style() -> None:
    track = retrieval(CLIPS, cosine_ranker(vectors(0.0)), "same-track")
    assert track["HitRate@1"]["mean"] == 1.0 and track["MRR"]["mean"] == 1.0
    style = retrieval(CLIPS, cosine_ranker(vectors(0.0)), "same-style")
    # A query's own second clip is left out: rock has one other track (2 clips) among 8.
    assert style["mAP"]["mean"] == 1.0
    assert style["HitRate@1"]["n"] == len(CLIPS)


def test_random_is_at_chance_and_below_audio() -> None:
    rnd = random_expectation(CLIPS, "same-track")
    assert abs(rnd["HitRate@1"]["mean"] - 1 / 9) < 0.03  # one relevant among 9
    noisy = retrieval(CLIPS, cosine_ranker(vectors(0.05)), "same-track")
    assert noisy["MRR"]["mean"] > rnd["MRR"]["mean"] + 0.3
