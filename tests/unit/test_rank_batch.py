"""The batch ranking ranks as the per-listener ranking did: lists recorded from it
(``tests/fixtures/rank_golden.json``, two seeded scenarios of ``rank_scenario``) come out
the same, item for item, reason for reason, score for score (to 1e-5); and one batch ranks each
listener as a batch of one would."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rank_scenario import NOW_MS, build

from streams.candidates import audio_hits, gather_pool, pool_source
from streams.fusion import DEFAULT_WEIGHTS, SEQUENCE_WEIGHTS
from streams.lists import rank_listener
from streams.rank import rank_pools

GOLDEN = json.loads(
    (Path(__file__).resolve().parents[1] / "fixtures" / "rank_golden.json").read_text()
)


def _inputs(seed: int):  # type: ignore[no-untyped-def]
    sc = build(seed)
    popular, fresh = sc.catalog.lists(
        top_popular=20, top_fresh=10, now_ms=NOW_MS, fresh_window_ms=DEFAULT_WEIGHTS.fresh_window_ms
    )
    for st in sc.states:
        recent = {h.track_id for h in st.recent}
        found = audio_hits(sc.hits.get(st.user_id, []), sc.cache)
        hits = [h for h in found if h.track_id not in recent][:30]
        yield sc, st, hits, sc.sequences.get(st.user_id, []), popular, fresh


@pytest.mark.parametrize("seed", [7, 11])
def test_lists_are_the_recorded_ones(seed: int) -> None:
    for sc, st, hits, seq, popular, fresh in _inputs(seed):
        r = rank_listener(
            st,
            hits,
            cache=sc.cache,
            catalog=sc.catalog,
            popular=popular,
            fresh=fresh,
            k=10,
            max_per_artist=2,
            now_ms=NOW_MS,
            # The recorded rule: no artist signal (added after the recording).
            weights=(SEQUENCE_WEIGHTS if seq else DEFAULT_WEIGHTS).replace(artist=0.0),
            sequence=seq,
        )
        want = GOLDEN[f"{seed}/{st.user_id}"]
        assert r.source == want["source"]
        assert [[i.track_id, i.reason] for i in r.items] == [
            [t, why] for t, _, why in want["items"]
        ], st.user_id
        # Scores to 1e-5: the scenario's cosines are float32 matrix products, whose last bits
        # depend on the CPU's BLAS kernels (the fixture was recorded on another machine).
        assert [i.score for i in r.items] == pytest.approx(
            [sc for _, sc, _ in want["items"]], abs=1e-5
        ), st.user_id


def test_one_pass_over_a_batch_ranks_each_listener_as_alone() -> None:
    pools, singles = [], []
    for sc, st, hits, _, popular, fresh in _inputs(7):
        pool = gather_pool(
            st,
            hits,
            cache=sc.cache,
            catalog=sc.catalog,
            popular=popular,
            fresh=fresh,
            now_ms=NOW_MS,
        )
        pools.append(pool)
        singles += rank_pools(
            [pool],
            k=10,
            max_per_artist=2,
            mix=DEFAULT_WEIGHTS.mix_weights,
            titles=sc.catalog.labels,
        )
        assert pool_source(hits, []) in ("audio", "collab-pop")
    batch = rank_pools(
        pools, k=10, max_per_artist=2, mix=DEFAULT_WEIGHTS.mix_weights, titles=sc.catalog.labels
    )
    assert batch == singles and any(batch)
    assert rank_pools([], k=10, max_per_artist=2, mix=DEFAULT_WEIGHTS.mix_weights) == []
