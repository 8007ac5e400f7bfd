"""Every recommender learns a tiny synthetic sequential log with a clear pattern and beats
Random on its held-out last items."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.recsys.baselines import ItemKNN, PopRank, RandomRec, Recommender
from models.recsys.data import Dataset, split_leave_last_out
from models.recsys.evaluate import evaluate_model, run_eval
from models.recsys.report import table
from models.recsys.sasrec import SASRec, SASRecConfig
from models.recsys.train import BPRRec, SASRecRec, TrainConfig

N_BLOCKS, BLOCK, LENGTH, N_USERS = 4, 10, 8, 120


def synthetic() -> Dataset:
    """Users walk i -> i+1 (cyclically) inside one block of 10 items, 8 steps, no repeats."""
    rng = np.random.default_rng(0)
    seqs = []
    for u in range(N_USERS):
        block, start = u % N_BLOCKS, int(rng.integers(BLOCK))
        seqs.append([block * BLOCK + (start + t) % BLOCK for t in range(LENGTH)])
    n = N_BLOCKS * BLOCK
    return split_leave_last_out(
        "toy", seqs, n, [str(i) for i in range(n)], [str(u) for u in range(N_USERS)]
    )


def hit5(model: Recommender, data: Dataset) -> float:
    model.fit(data)
    return float(evaluate_model(model, data, seed=0)["HitRate@5"].mean())


@pytest.fixture(scope="module")
def data() -> Dataset:
    return synthetic()


@pytest.fixture(scope="module")
def random_hr(data: Dataset) -> float:
    return hit5(RandomRec(0), data)


def test_random_is_near_chance(random_hr: float) -> None:
    # 7 history items excluded -> 5 of the remaining 33 items are recommended.
    assert random_hr == pytest.approx(5 / 33, abs=0.08)


def test_itemknn_beats_random(data: Dataset, random_hr: float) -> None:
    assert hit5(ItemKNN(), data) > 0.9 > random_hr + 0.5


def test_poprank_runs(data: Dataset) -> None:
    assert 0.0 <= hit5(PopRank(), data) <= 1.0


def test_sasrec_beats_random(data: Dataset, random_hr: float) -> None:
    cfg = SASRecConfig(max_len=10, hidden=32, hidden_dropout=0.1, attn_dropout=0.1)
    model = SASRecRec(cfg, TrainConfig(epochs=10, batch_size=32, lr=5e-3, eval_every=5, seed=0))
    assert hit5(model, data) > random_hr + 0.4


def test_bpr_beats_random(data: Dataset, random_hr: float) -> None:
    tc = TrainConfig(epochs=15, batch_size=64, lr=2e-2, eval_every=5, seed=0)
    assert hit5(BPRRec(train_config=tc), data) > random_hr + 0.3


def test_sasrec_is_causal() -> None:
    torch.manual_seed(0)
    model = SASRec(20, SASRecConfig(max_len=6, hidden=16)).eval()
    seq = torch.tensor([[0, 0, 3, 4, 5, 6]])
    changed = seq.clone()
    changed[0, -1] = 9
    with torch.no_grad():
        a, b = model(seq), model(changed)
    assert torch.allclose(a[:, :-1], b[:, :-1], atol=1e-5)
    assert not torch.allclose(a[:, -1], b[:, -1])


def test_run_eval_and_table(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "LastFM.txt"
    seqs = synthetic()
    lines = []
    for u in range(N_USERS):
        full = list(seqs.test[u].history) + [seqs.test[u].target]
        lines.append(" ".join([str(u + 1), *(str(i + 1) for i in full)]))
    path.write_text("\n".join(lines) + "\n")
    out = Path(str(tmp_path)) / "res.json"
    res = run_eval("lastfm", path, ["random", "itemknn"], [0, 1], quick=True, out=out)
    assert out.is_file()
    rows = table(res)
    assert [c.header for c in rows.columns][:3] == ["Model", "Recall@10", "Recall@20"]
    assert list(rows.columns[0].cells) == ["random", "itemknn"]
    assert res["models"]["itemknn"]["metrics"]["HitRate@20"]["mean"] == 1.0
