"""Top-K metrics against hand-computed cases, tie handling, exclusion and CI bounds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.recsys.metrics import (
    case_metrics,
    full_ranking,
    sampled_ranking,
    summarize,
    top_k,
)


def test_single_target_hand_computed() -> None:
    # Items 0..5, scores give ranking 5,4,3,2,1,0.
    scores = np.array([[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]] * 3)
    targets = [5, 3, 0]  # positions 0, 2, 5
    res = full_ranking(scores, targets, exclude_history=False, ks=(1, 3, 5))
    assert res["HitRate@1"].tolist() == [1.0, 0.0, 0.0]
    assert res["HitRate@3"].tolist() == [1.0, 1.0, 0.0]
    assert res["Recall@5"].tolist() == [1.0, 1.0, 0.0]
    assert res["NDCG@3"] == pytest.approx([1.0, 1.0 / math.log2(4), 0.0])
    assert res["MRR@5"] == pytest.approx([1.0, 1.0 / 3, 0.0])
    assert res["MAP@5"] == pytest.approx(res["MRR@5"])


def test_multi_target_hand_computed() -> None:
    ranked = np.array([[7, 1, 8, 2, 9]])
    res = case_metrics(ranked, [[1, 2, 3]], ks=(5,))
    # hits at positions 1 and 3 (0-based)
    assert res["HitRate@5"][0] == 1.0
    assert res["Recall@5"][0] == pytest.approx(2 / 3)
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert res["NDCG@5"][0] == pytest.approx(dcg / idcg)
    assert res["MRR@5"][0] == pytest.approx(0.5)
    assert res["MAP@5"][0] == pytest.approx((1 / 2 + 2 / 4) / 3)


def test_exclude_history_changes_rank() -> None:
    scores = np.array([[5.0, 4.0, 3.0, 2.0]])
    kept = full_ranking(scores, [2], [[0, 1]], exclude_history=False, ks=(1, 3))
    excl = full_ranking(scores, [2], [[0, 1]], exclude_history=True, ks=(1, 3))
    assert kept["HitRate@1"][0] == 0.0 and kept["MRR@3"][0] == pytest.approx(1 / 3)
    assert excl["HitRate@1"][0] == 1.0 and excl["MRR@3"][0] == 1.0


def test_ties_broken_at_random_not_optimistically() -> None:
    # Constant scores: expected HitRate@K = K / n_items.
    n, b = 50, 4000
    res = full_ranking(np.zeros((b, n)), [0] * b, exclude_history=False, ks=(5,), seed=3)
    assert res["HitRate@5"].mean() == pytest.approx(5 / n, abs=0.015)


def test_top_k_matches_argsort_without_ties() -> None:
    rng = np.random.default_rng(0)
    s = rng.random((20, 100))
    assert np.array_equal(top_k(s, 10, rng), np.argsort(-s, axis=1)[:, :10])


def test_sampled_ranking_perfect_and_worst() -> None:
    n = 300
    scores = np.tile(np.arange(n, dtype=float), (2, 1))
    res = sampled_ranking(scores, [n - 1, 0], [[], []], n_negatives=99, ks=(1, 10))
    assert res["HitRate@1"].tolist() == [1.0, 0.0]
    assert res["HitRate@10"][1] == 0.0


def test_summarize_ci() -> None:
    v = np.array([0.0, 1.0] * 50)
    s = summarize(v)
    assert s.mean == pytest.approx(0.5)
    assert s.ci95 == pytest.approx(1.96 * np.std(v, ddof=1) / 10)
    lo, hi = s.mean - s.ci95, s.mean + s.ci95
    assert 0.39 < lo < 0.41 and 0.59 < hi < 0.61
    assert summarize(np.ones(10)).ci95 == 0.0
    grouped = summarize(np.array([1.0, 0.0, 0.0, 1.0]), groups=[0, 0, 0, 1])
    assert grouped.n == 2 and grouped.mean == pytest.approx((1 / 3 + 1) / 2)


def test_ci_covers_true_rate() -> None:
    rng = np.random.default_rng(1)
    covered = 0
    for _ in range(200):
        s = summarize((rng.random(400) < 0.3).astype(float))
        covered += abs(s.mean - 0.3) <= s.ci95
    assert covered / 200 > 0.9
