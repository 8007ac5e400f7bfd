"""Fusion ranking rules: user vector, exclusion, diversity, reasons, cold users."""

from __future__ import annotations

import numpy as np

from schemas.events import InteractionType
from streams.fusion import FusionWeights, collab_scores, user_vector
from streams.rank import Candidate, rank
from streams.state import HistoryItem


def h(t: str, kind: str = "play", at: int = 0) -> HistoryItem:
    return HistoryItem(track_id=t, type=InteractionType(kind), at_ms=at)


E = {
    "a": np.array([1.0, 0.0, 0.0]),
    "b": np.array([0.0, 1.0, 0.0]),
    "c": np.array([0.0, 0.0, 1.0]),
}


def test_user_vector_weights_recent_plays_more() -> None:
    u = user_vector([h("a", at=1), h("b", at=2)], E)
    assert u is not None
    assert u[1] > u[0] > 0
    assert abs(float(np.linalg.norm(u)) - 1.0) < 1e-6


def test_skips_push_the_user_vector_away() -> None:
    plain = user_vector([h("a"), h("b")], E)
    skipped = user_vector([h("a"), h("b"), h("c", "skip")], E)
    assert plain is not None and skipped is not None
    assert skipped[2] < 0 <= plain[2]


def test_no_vector_without_played_audio() -> None:
    assert user_vector([h("x"), h("c", "skip")], E) is None
    assert user_vector([], E) is None


def test_rank_excludes_heard_and_caps_artists() -> None:
    cands = [Candidate(track_id=f"t{i}", artist_id="same", audio=1 - i / 10) for i in range(5)]
    cands += [Candidate(track_id="heard", audio=1.0), Candidate(track_id="other", audio=0.1)]
    items = rank(cands, exclude={"heard"}, k=10, max_per_artist=2)
    assert [i.track_id for i in items] == ["t0", "t1", "other"]


def test_rank_mixes_sources_and_explains() -> None:
    cands = [
        Candidate(track_id="x", audio=0.9, similar_to="a"),
        Candidate(track_id="y", collab=5.0, coplayed_with="b"),
        Candidate(track_id="z", popularity=3.0),
    ]
    w = FusionWeights(audio=0.6, collab=0.3, popularity=0.1)
    items = rank(cands, exclude=set(), k=3, max_per_artist=2, titles={"a": "Song A"}, w=w)
    by = {i.track_id: i for i in items}
    assert [i.track_id for i in items] == ["x", "y", "z"]
    assert by["x"].reason == "sounds like Song A, which you played"
    assert "b" in by["y"].reason
    assert "popular" in by["z"].reason
    assert items[0].score > items[1].score > items[2].score


def test_same_track_from_two_sources_merges() -> None:
    cands = [
        Candidate(track_id="x", audio=0.5, similar_to="a"),
        Candidate(track_id="x", collab=2.0, coplayed_with="b"),
        Candidate(track_id="y", audio=0.5),
    ]
    items = rank(cands, exclude=set(), k=5, max_per_artist=2)
    assert [i.track_id for i in items] == ["x", "y"]


def test_cold_user_gets_popular_tracks_deterministically() -> None:
    cands = [Candidate(track_id=t, popularity=p) for t, p in [("b", 1), ("a", 1), ("c", 5)]]
    items = rank(cands, exclude=set(), k=3, max_per_artist=2)
    assert [i.track_id for i in items] == ["c", "a", "b"]


def test_collab_scores_follow_recent_positive_history() -> None:
    co = {"a": {"x": 2}, "b": {"x": 1, "y": 4}, "s": {"z": 9}}
    w = FusionWeights(recency_decay=0.5)
    scores, via = collab_scores([h("a"), h("s", "skip"), h("b")], co, w)
    assert set(scores) == set(via) == {"x", "y"}  # nothing from the skipped track
    assert (scores["y"], via["y"]) == (4.0, "b")
    assert scores["x"] == 2 * 0.25 + 1 and via["x"] == "b"  # b's 1 outweighs a's 2 x 0.25


def test_audio_hits_take_artist_and_upload_time_from_the_cache() -> None:
    from streams.candidates import AudioHit, CachedTrack, VectorCache, audio_hits

    cache = VectorCache(capacity=10)
    v = np.ones(4, dtype=np.float32)
    cache.put("a", CachedTrack(embedding=v, artist_id="band", uploaded_at_ms=5))
    cache.put("b", None)  # known to have no vector (deleted since the index was searched)
    cache.put("c", CachedTrack(embedding=v, artist_id=None, uploaded_at_ms=None))
    found = [("a", 0.9), ("b", 0.8), ("c", 0.7), ("never-seen", 0.6)]
    assert audio_hits(found, cache) == [AudioHit("a", 0.9, "band", 5), AudioHit("c", 0.7, "", 0)]


def test_search_asks_room_only_for_recent_tracks_that_can_be_hits() -> None:
    """Recent tracks are dropped from the hits after the batched search; only those with a
    vector can come back, so only they widen the search (each hit costs a parsed object)."""
    from streams.candidates import CachedTrack, VectorCache, audio_candidates, search_limit
    from streams.state import UserState

    cache = VectorCache()
    cache.put("a", CachedTrack(embedding=E["a"], artist_id=None, uploaded_at_ms=None))
    cache.put("silent", None)  # known to have no audio
    st = UserState(user_id="u", recent=(h("a"), h("a", at=1), h("silent", at=2), h("x", at=3)))
    assert search_limit(10, st, cache) == audio_candidates(10) + 1


def test_a_track_played_twice_counts_its_co_plays_with_both_weights() -> None:
    co = {"a": {"x": 2}, "b": {"x": 4}}
    w = FusionWeights(recency_decay=0.5)
    scores, via = collab_scores([h("a"), h("b"), h("a")], co, w)  # weights 0.25, 0.5, 1
    assert scores["x"] == 2 * (0.25 + 1) + 4 * 0.5
    assert via["x"] == "a"  # a's 2.5 outweighs b's 2
