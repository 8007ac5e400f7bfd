"""One fusion: the streaming agent's ``rank`` and the offline hybrid score alike."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from models.fusion_rule import MixWeights, fuse, relative_probability, scale_by_max
from models.recsys.data import Dataset
from models.recsys.hybrid import HybridRec
from streams.fusion import FusionWeights
from streams.rank import Candidate, rank

N = 40
IDS = [f"t{i:02d}" for i in range(N)]


class Fixed:
    """A fitted component that returns one fixed score row."""

    def __init__(self, row: np.ndarray) -> None:
        self.row = row

    def fit(self, train: Dataset) -> None:  # pragma: no cover - never fitted here
        raise AssertionError

    def score(self, histories: Sequence[Sequence[int]], users: Sequence[int]) -> np.ndarray:
        return np.tile(self.row, (len(histories), 1))


def raw_scores(seed: int) -> dict[str, np.ndarray]:
    """Component scores as the offline models produce them (sasrec: logits)."""
    rng = np.random.default_rng(seed)
    content = rng.random(N) * (rng.random(N) < 0.6)  # cosines, many items unrelated (0)
    coplay = rng.poisson(1.5, N) * rng.random(N)  # co-occurrence, many zeros
    pop = rng.integers(2, 60, N).astype(float)  # training counts, never 0 on 30Music
    logits = rng.normal(0.0, 2.0, N)
    return {"contentknn": content, "itemknn": coplay, "pop": pop, "sasrec": logits}


def offline(raw: dict[str, np.ndarray], weights: tuple[float, ...]) -> tuple[HybridRec, np.ndarray]:
    names = ("pop", "itemknn", "contentknn", "sasrec")
    hyb = HybridRec([(n, Fixed(raw[n])) for n in names])
    hyb.weights = weights
    return hyb, hyb.score([[0]], [0])[0]


def candidates(raw: dict[str, np.ndarray], keep: np.ndarray | None = None) -> list[Candidate]:
    """What the agent would receive: one candidate per source proposal (merged by ``rank``);
    the sequence score as ``streams.candidates`` turns the model's logits into it."""
    seq = np.exp(np.minimum(0.0, raw["sasrec"] - raw["sasrec"].max()))
    out = []
    for i in range(N) if keep is None else keep:
        out += [
            Candidate(track_id=IDS[i], audio=float(raw["contentknn"][i])),
            Candidate(track_id=IDS[i], collab=float(raw["itemknn"][i])),
            Candidate(track_id=IDS[i], popularity=float(raw["pop"][i])),
            Candidate(track_id=IDS[i], sequence=float(seq[i])),
        ]
    return out


def offline_order(scores: np.ndarray) -> list[str]:
    return [IDS[i] for i in sorted(range(N), key=lambda i: (-scores[i], IDS[i]))]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(
    "weights", [(0.1, 0.2, 0.3, 0.4), (0.0, 0.5, 0.5, 0.0), (0.05, 0.2, 0.3, 0.45)]
)
def test_online_rank_equals_offline_hybrid(seed: int, weights: tuple[float, ...]) -> None:
    raw = raw_scores(seed)
    hyb, scores = offline(raw, weights)
    w = FusionWeights.from_mix(hyb.mix_weights())
    items = rank(candidates(raw), exclude=set(), k=N, max_per_artist=N, w=w)
    assert [i.track_id for i in items] == offline_order(scores)
    by = {i.track_id: i.score for i in items}
    assert all(abs(by[IDS[i]] - scores[i]) < 1e-6 for i in range(N))


def test_min_max_scaling_would_rank_differently() -> None:
    """The test above can fail: the old offline rule (min-max of the logits) disagrees."""
    raw = raw_scores(0)
    _, scores = offline(raw, (0.1, 0.2, 0.3, 0.4))

    def minmax(x: np.ndarray) -> np.ndarray:
        return (x - x.min()) / (x.max() - x.min())

    old = 0.1 * minmax(raw["pop"]) + 0.2 * minmax(raw["itemknn"])
    old = old + 0.3 * minmax(raw["contentknn"]) + 0.4 * minmax(raw["sasrec"])
    assert offline_order(old) != offline_order(scores)


def test_scores_do_not_depend_on_how_many_candidates_were_fetched() -> None:
    """Each source proposes only its top items online; with max-scaling an item's score is
    its full-catalogue score as long as every source's best item is in the pool."""
    raw = raw_scores(3)
    _, scores = offline(raw, (0.1, 0.2, 0.3, 0.4))
    keep = {int(np.argmax(raw[n])) for n in raw}
    keep |= set(np.argsort(-scores)[:10].tolist()) | {5, 17, 33}
    w = FusionWeights(audio=0.3, collab=0.2, popularity=0.1, fresh=0.0, sequence=0.4)
    items = rank(candidates(raw, sorted(keep)), exclude=set(), k=N, max_per_artist=N, w=w)
    assert len(items) == len(keep)
    for it in items:
        assert abs(it.score - scores[IDS.index(it.track_id)]) < 1e-6


def test_fuse_scales_by_max_and_clips() -> None:
    assert scale_by_max(np.array([-1.0, 0.0, 2.0, 4.0])).tolist() == [0.0, 0.0, 0.5, 1.0]
    assert scale_by_max(np.zeros((2, 3))).tolist() == [[0.0] * 3] * 2
    assert relative_probability(np.array([1.0, 3.0]))[1] == 1.0
    w = MixWeights(audio=0.5, popularity=0.5)
    s = fuse({"audio": np.array([0.2, 0.4]), "popularity": np.array([10.0, 0.0])}, w)
    assert s.tolist() == [0.25 + 0.5, 0.5]
    with pytest.raises(KeyError):
        fuse({"tags": np.ones(2)}, w)
    with pytest.raises(ValueError):
        MixWeights(audio=-0.1)


def test_the_diversity_cap_takes_the_order_down_and_exempts_favourites() -> None:
    from models.fusion_rule import capped

    artists = ["A", "A", "A", None, "B", "A", None]
    order = [0, 1, 2, 3, 4, 5, 6]
    assert capped(order, artists, k=5, cap=2) == [0, 1, 3, 4, 6]  # third A and later skipped
    assert capped(order, artists, k=3, cap=0) == [0, 1, 2]  # 0: no cap
    # favourites (entries 2 and 5) are neither capped nor counted: both A's before them stay
    assert capped(order, artists, k=7, cap=2, exempt={2, 5}) == [0, 1, 2, 3, 4, 5, 6]
    assert capped(order, artists, k=4, cap=1, exempt={1}) == [0, 1, 3, 4]
    assert capped([], artists, k=3, cap=1) == []
