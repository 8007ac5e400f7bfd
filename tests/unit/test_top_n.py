"""The one top-N selection of the user encoder (models/top_n.py), which the embedded model
(serving/user_model.py) and production Triton's backend (models/triton_user_model.py) both
run; that their answers agree on a real network is tests/unit/test_export_user_triton.py."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from models.top_n import history_indices, left_padded, recommend, top_unseen

VOCAB = ["a", "b", "c", "d", "e"]
INDEX = {t: j + 1 for j, t in enumerate(VOCAB)}


def test_history_indices_drop_padding_and_unknown_ids() -> None:
    assert history_indices(["", "b", "zz", "a", "b"], INDEX) == [2, 1, 2]


def test_left_padded_keeps_the_most_recent() -> None:
    assert left_padded([1, 2], 4).tolist() == [[0, 0, 1, 2]]
    assert left_padded([1, 2, 3, 4, 5], 3).tolist() == [[3, 4, 5]]


def test_top_unseen_is_best_first_ties_by_position_and_never_seen() -> None:
    scores = np.array([0.5, 0.9, 0.9, 0.1, 0.9], dtype=np.float32)
    assert top_unseen(scores, [1], 3).tolist() == [2, 4, 0]
    assert top_unseen(scores, [0, 1, 2, 3], 3).tolist() == [4]  # fewer unseen than asked
    assert top_unseen(scores, range(5), 3).tolist() == []
    assert scores[1] == np.float32(0.9)  # the caller's scores are left as they were


def test_recommend_scores_the_padded_history_and_excludes_it() -> None:
    seen: list[list[int]] = []

    def score(seq: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        seen.append(seq.tolist()[0])
        return np.array([[0.1, 0.2, 0.3, 0.4, 0.5]], dtype=np.float32)  # [1, V] is fine too

    ids, scores = recommend(
        ["", "e", "unknown", "c"], index=INDEX, vocab=VOCAB, length=3, top_n=2, score_fn=score
    )
    assert seen == [[0, 5, 3]]
    assert ids == ["d", "b"] and scores.dtype == np.float32
    np.testing.assert_allclose(scores, [0.4, 0.2])


def test_a_history_the_model_does_not_know_gets_nothing_and_no_call() -> None:
    def score(seq: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        raise AssertionError("not called")

    ids, scores = recommend(["zz", ""], index=INDEX, vocab=VOCAB, length=3, top_n=2, score_fn=score)
    assert ids == [] and scores.shape == (0,)
