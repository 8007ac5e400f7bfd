"""DMM-HyRec, GRU4Rec and ContentKNN: they learn a tiny patterned log, the hybrid scores
unseen items from content (cold start), and its attention is a masked distribution."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from models.recsys.baselines import RandomRec, Recommender
from models.recsys.contentknn import ContentKNN
from models.recsys.data import Dataset, split_leave_last_out
from models.recsys.dmmhyrec import DMMHyRec, DMMHyRecConfig
from models.recsys.evaluate import evaluate_model
from models.recsys.gru4rec import GRU4RecConfig
from models.recsys.train import DMMHyRecRec, GRU4RecRec, TrainConfig

N_BLOCKS, BLOCK, LENGTH, N_USERS = 4, 10, 8, 120


def synthetic() -> Dataset:
    """Users walk i -> i+1 (cyclically) inside one block of 10 items; content = block one-hot
    plus a per-item feature, so content carries the block but not the order."""
    rng = np.random.default_rng(0)
    seqs = []
    for u in range(N_USERS):
        block, start = u % N_BLOCKS, int(rng.integers(BLOCK))
        seqs.append([block * BLOCK + (start + t) % BLOCK for t in range(LENGTH)])
    n = N_BLOCKS * BLOCK
    content = np.zeros((n, N_BLOCKS + n), dtype=np.float32)
    for i in range(n):
        content[i, i // BLOCK] = 1.0
        content[i, N_BLOCKS + i] = 1.0
    data = split_leave_last_out(
        "toy", seqs, n, [str(i) for i in range(n)], [str(u) for u in range(N_USERS)]
    )
    return replace(data, content=content)


def hit5(model: Recommender, data: Dataset) -> float:
    model.fit(data)
    return float(evaluate_model(model, data, seed=0)["HitRate@5"].mean())


@pytest.fixture(scope="module")
def data() -> Dataset:
    torch.set_num_threads(1)
    return synthetic()


def test_dmmhyrec_beats_random(data: Dataset) -> None:
    random_hr = hit5(RandomRec(0), data)
    cfg = DMMHyRecConfig(max_len=10, dim=32, dropout=0.0, loss="ce")
    model = DMMHyRecRec(cfg, TrainConfig(epochs=20, batch_size=64, lr=1e-2, eval_every=5))
    assert hit5(model, data) > random_hr + 0.4


def test_dmmhyrec_bpr_beats_random(data: Dataset) -> None:
    random_hr = hit5(RandomRec(0), data)
    cfg = DMMHyRecConfig(max_len=10, dim=32, dropout=0.0, n_negatives=4)
    model = DMMHyRecRec(cfg, TrainConfig(epochs=20, batch_size=64, lr=1e-2, eval_every=5))
    assert hit5(model, data) > random_hr + 0.3


def test_gru4rec_beats_random(data: Dataset) -> None:
    random_hr = hit5(RandomRec(0), data)
    model = GRU4RecRec(
        GRU4RecConfig(max_len=10, hidden=32, gru_hidden=32, dropout=0.0),
        TrainConfig(epochs=20, batch_size=32, lr=1e-2, eval_every=5),
    )
    assert hit5(model, data) > random_hr + 0.4


def test_cold_item_is_scored_from_content() -> None:
    # Every user plays item 1 (popular) after item 0; item 5 never occurs in training but has
    # exactly item 1's content, so a content-aware model must rank it next to item 1.
    rng = np.random.default_rng(0)
    seqs = [[int(rng.integers(2, 5)), 0, 1, 0, 1] for _ in range(60)]
    n = 6
    content = np.eye(n, dtype=np.float32)
    content[5] = content[1]
    data = split_leave_last_out(
        "cold", seqs, n, [str(i) for i in range(n)], [str(u) for u in range(60)]
    )
    data = replace(data, content=content)
    model = DMMHyRecRec(
        DMMHyRecConfig(max_len=5, dim=16, dropout=0.0, loss="ce"),
        TrainConfig(epochs=30, batch_size=32, lr=1e-2, eval_every=10),
    )
    model.fit(data)
    scores = model.score([[3, 0]])[0]
    order = list(np.argsort(-scores))
    assert order.index(1) <= 1 and order.index(5) <= 2
    assert scores[5] > np.median(scores)
    # Without content, the unseen item has nothing to go on.
    assert model.model is not None and float(model.model.warm[5 + 1]) == 0.0


def test_attention_is_masked_distribution() -> None:
    torch.manual_seed(0)
    model = DMMHyRec(10, torch.eye(10), config=DMMHyRecConfig(max_len=6, dim=8)).eval()
    seq = torch.tensor([[3, 4, 5, 0, 0, 0], [1, 2, 3, 4, 5, 6], [0, 0, 0, 0, 0, 0]])
    with torch.no_grad():
        user, alpha, lam = model.encode(seq)
        # Appending items after the padding slots of row 0 changes nothing before them, and
        # the empty history (row 2) still gets a finite user vector.
        longer = seq.clone()
        longer[0, 3] = 7
        _, alpha2, _ = model.encode(longer)
    assert torch.allclose(alpha.sum(1), torch.ones(3))
    assert torch.all(alpha[0, 3:] == 0) and torch.all(alpha[0, :3] > 0)
    assert alpha2[0, 3] > 0 and torch.all(alpha2[0, 4:] == 0)
    assert torch.all((lam >= 0) & (lam <= 1))
    assert torch.isfinite(user).all()
    assert model.scores(seq).shape == (3, 10)


def test_ablations_run() -> None:
    torch.manual_seed(0)
    seq = torch.tensor([[3, 4, 5, 0], [1, 2, 0, 0]])
    for cfg in (
        DMMHyRecConfig(max_len=4, dim=8, use_seq=False),
        DMMHyRecConfig(max_len=4, dim=8, use_attn=False),
        DMMHyRecConfig(max_len=4, dim=8, use_content=False),
    ):
        model = DMMHyRec(10, torch.eye(10), n_types=3, config=cfg).eval()
        with torch.no_grad():
            _, alpha, _ = model.encode(seq, torch.tensor([[1, 2, 1, 0], [1, 1, 0, 0]]))
        assert torch.allclose(alpha.sum(1), torch.ones(2))
        assert torch.all(alpha[1, 2:] == 0)


def test_contentknn_hand_made() -> None:
    # Items 0,1 share tag A; item 2 has tag B; item 3 has A and B; item 4 has nothing.
    content = np.array([[1, 0], [1, 0], [0, 1], [1, 1], [0, 0]], dtype=np.float32)
    data = split_leave_last_out("c", [[0, 1, 2]], 5, list("01234"), ["u"])
    knn = ContentKNN()
    knn.fit(replace(data, content=content))
    s = knn.score([[0]])[0]
    assert s[1] == pytest.approx(1.0) and s[0] == pytest.approx(1.0)
    assert s[1] > s[3] > s[2] == pytest.approx(0.0) and s[4] == 0.0
    with pytest.raises(ValueError, match="side information"):
        ContentKNN().fit(data)


def test_hybridrec_weights_follow_validation_and_match_the_best_component(data: Dataset) -> None:
    from models.recsys.baselines import ItemKNN
    from models.recsys.hybrid import HybridRec, signal, simplex_grid

    grid = simplex_grid(3, 0.5)
    assert sorted(grid) == sorted(
        [(1, 0, 0), (0, 1, 0), (0, 0, 1), (0.5, 0.5, 0), (0.5, 0, 0.5), (0, 0.5, 0.5)]
    )
    # Scaled by the row maximum (models.fusion_rule); sequence logits as relative probabilities.
    np.testing.assert_allclose(
        signal("itemknn", np.array([[1.0, 4.0, 2.0], [0.0, 0.0, 0.0]])), [[0.25, 1, 0.5], [0, 0, 0]]
    )
    np.testing.assert_allclose(signal("sasrec", np.log([[1.0, 4.0, 2.0]])), [[0.25, 1, 0.5]])
    # Random noise next to ItemKNN (which has learnt the walk): validation gives noise no weight.
    hybrid = HybridRec([("audio", RandomRec(0)), ("itemknn", ItemKNN())])
    knn = hit5(ItemKNN(), data)
    assert hit5(hybrid, data) >= knn > 0.5
    assert hybrid.weights[0] <= 0.2 and hybrid.best_valid > 0.3
    # Without side information the content component is dropped, not an error.
    no_content = replace(data, content=None)
    h2 = HybridRec([("itemknn", ItemKNN()), ("contentknn", ContentKNN())])
    h2.fit(no_content)
    assert [n for n, _ in h2.components] == ["itemknn"] and h2.weights == (1.0,)
