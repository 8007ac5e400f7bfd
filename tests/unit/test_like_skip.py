"""The per-listener like/skip model (models.like_skip): its boundaries, and that the fusion
only feels it when its weight is on and the listener both kept and skipped something."""

from __future__ import annotations

import numpy as np
import pytest

from models.fusion_rule import SkipPenalty, penalise
from models.like_skip import fit, learnt_skip_evidence
from schemas.events import InteractionType
from streams.candidates import (
    AudioHit,
    CachedTrack,
    VectorCache,
    gather_pool,
    kept_and_skipped,
)
from streams.catalog import Catalog
from streams.fusion import DEFAULT_WEIGHTS
from streams.rank import Pool, rank_pools
from streams.state import HistoryItem, UserState

D = 200
RNG = np.random.default_rng(7)
COMMON = np.abs(RNG.normal(size=D))  # MusiCNN vectors share a large common part


def _style(centre: np.ndarray, n: int) -> np.ndarray:
    return COMMON + centre + 0.1 * RNG.normal(size=(n, D))


A, B = np.abs(RNG.normal(size=D)), np.abs(RNG.normal(size=D))
KEPT, SKIPPED = _style(A, 4), _style(B, 3)
EMPTY = np.zeros((0, D))


def test_no_skips_says_nothing() -> None:
    assert fit(KEPT, EMPTY, l2=0.03) is None
    assert not learnt_skip_evidence(None, _style(B, 5)).any()


def test_only_skips_says_nothing() -> None:
    # One class teaches a logistic model only its intercept; the audio penalty covers it.
    assert fit(EMPTY, SKIPPED, l2=0.03) is None


def test_it_leans_towards_the_skips_for_what_sounds_like_them() -> None:
    m = fit(KEPT, SKIPPED, l2=0.03)
    assert m is not None
    p = m.p_finish(np.stack([COMMON + A, COMMON + B]))
    assert p[0] > 0.5 > p[1]
    ev = learnt_skip_evidence(m, np.stack([COMMON + A, COMMON + B]))
    np.testing.assert_allclose(ev, 1.0 - p)
    assert 0.0 <= ev[0] < 0.5 < ev[1] <= 1.0


def test_balanced_classes_a_lone_skip_counts_as_much_as_many_plays() -> None:
    m = fit(_style(A, 20), SKIPPED[:1], l2=0.03)
    assert m is not None and m.p_finish(SKIPPED[:1])[0] < 0.5


def test_a_larger_l2_gives_flatter_probabilities() -> None:
    x = np.stack([COMMON + A, COMMON + B])
    sharp, flat = fit(KEPT, SKIPPED, l2=0.01), fit(KEPT, SKIPPED, l2=10.0)
    assert sharp is not None and flat is not None
    assert np.ptp(sharp.p_finish(x)) > np.ptp(flat.p_finish(x)) > 0.0


def test_identical_vectors_in_both_classes_are_a_coin_flip() -> None:
    v = (COMMON + A)[None]
    m = fit(np.repeat(v, 3, axis=0), np.repeat(v, 2, axis=0), l2=0.03)
    assert m is not None
    np.testing.assert_allclose(m.p_finish(np.stack([COMMON + A, COMMON + B])), 0.5, atol=1e-6)
    # The same for every candidate: it changes no order among tracks with audio.
    np.testing.assert_allclose(learnt_skip_evidence(m, np.stack([COMMON + A, COMMON + B])), 0.5)


def test_zero_and_non_finite_vectors_are_ignored() -> None:
    bad = np.stack([np.zeros(D), np.full(D, np.nan), np.full(D, np.inf)])
    assert fit(bad, SKIPPED, l2=0.03) is None  # no usable kept vector left
    m = fit(np.concatenate([KEPT, bad]), np.concatenate([SKIPPED, bad]), l2=0.03)
    ref = fit(KEPT, SKIPPED, l2=0.03)
    assert m is not None and ref is not None
    cand = np.concatenate([SKIPPED, bad])
    np.testing.assert_allclose(m.p_finish(cand), ref.p_finish(cand))
    assert np.isfinite(m.p_finish(cand)).all()
    np.testing.assert_array_equal(m.p_finish(bad), 0.5)
    assert m.p_finish(EMPTY).shape == (0,)


def test_weights_zero_drop_an_example_and_l2_must_be_positive() -> None:
    m = fit(KEPT, SKIPPED, l2=0.03, skipped_weight=np.array([1.0, 0.0, 0.0]))
    ref = fit(KEPT, SKIPPED[:1], l2=0.03)
    assert m is not None and ref is not None
    np.testing.assert_allclose(m.p_finish(SKIPPED), ref.p_finish(SKIPPED))
    with pytest.raises(ValueError):
        fit(KEPT, SKIPPED, l2=0.0)


def test_penalise_leaves_the_served_floats_when_the_learnt_weight_is_off() -> None:
    total, ev = np.array([[1.0, 0.5]]), np.array([[0.2, 0.0]])
    served = SkipPenalty(audio=0.5, artist=0.1, floor=0.5)
    same = penalise(total, ev, ev, served)
    assert penalise(total, ev, ev, served, np.ones_like(total)).tolist() == same.tolist()
    on = served.model_copy(update={"learnt": 1.0})
    np.testing.assert_allclose(penalise(total, ev, ev, on, np.array([[0.0, 0.3]])), same - [0, 0.3])


def _listener(*events: tuple[str, InteractionType]) -> UserState:
    recent = tuple(HistoryItem(track_id=t, type=k, at_ms=n) for n, (t, k) in enumerate(events))
    return UserState(user_id="u", recent=recent)


def test_kept_and_skipped_label_a_track_by_its_newest_event() -> None:
    st = _listener(
        ("a", InteractionType.SKIP),
        ("b", InteractionType.PLAY),
        ("a", InteractionType.PLAY),
        ("b", InteractionType.SKIP),
        ("c", InteractionType.LIKE),
    )
    assert kept_and_skipped(st, 0.5) == ({"c": 1.0, "a": 0.25}, {"b": 0.5})


def _pool_and_list(state: UserState, **weights: float) -> tuple[Pool, list[str]]:
    """Two audio hits: "like-s" sounds like the skip and leads on audio (0.9 against 0.8)."""
    cache = VectorCache()
    vecs = {"k1": KEPT[0], "k2": KEPT[1], "s1": SKIPPED[0], "like-k": KEPT[2], "like-s": SKIPPED[1]}
    for t, v in vecs.items():
        cache.put(t, CachedTrack(embedding=v, artist_id=None, uploaded_at_ms=None))
    hits = [AudioHit("like-s", 0.9, "", 0), AudioHit("like-k", 0.8, "", 0)]
    w = DEFAULT_WEIGHTS.replace(
        artist=0.0, skip_audio_penalty=0.0, skip_artist_penalty=0.0, **weights
    )
    pool = gather_pool(
        state,
        hits,
        cache=cache,
        catalog=Catalog(ttl_s=0.0),
        popular=[],
        fresh=[],
        now_ms=1,
        weights=w,
    )
    (items,) = rank_pools([pool], k=2, max_per_artist=2, mix=w.mix_weights, skip=w.skip_penalty)
    return pool, [i.track_id for i in items]


KEPT_ONLY = _listener(("k1", InteractionType.PLAY), ("k2", InteractionType.PLAY))
BOTH = _listener(*[(h.track_id, h.type) for h in KEPT_ONLY.recent], ("s1", InteractionType.SKIP))


def test_the_live_path_is_todays_rule_when_off_or_without_skips() -> None:
    assert DEFAULT_WEIGHTS.like_skip_penalty == 0.0  # not served: it did not earn its weight
    for state, weights in ((BOTH, {}), (KEPT_ONLY, {"like_skip_penalty": 1.0})):
        pool, ranked = _pool_and_list(state, **weights)
        assert pool.skip_learnt == [] and ranked == ["like-s", "like-k"]


def test_the_live_path_sinks_what_the_model_expects_skipped() -> None:
    pool, ranked = _pool_and_list(BOTH, like_skip_penalty=1.0)
    learnt = dict(zip(pool.ids, pool.skip_learnt, strict=True))
    assert learnt["like-s"] > 0.5 > learnt["like-k"]
    assert ranked == ["like-k", "like-s"]
