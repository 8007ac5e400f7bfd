"""The one trainer: a ``TrainTask`` gives model, samples and batch loss; the trainer owns epochs,
early stopping (best weights restored) and the wall-clock cap; per-model defaults are typed."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from models.recsys.data import Dataset, split_leave_last_out
from models.recsys.evaluate import TRAIN_DEFAULTS, make_model
from models.recsys.train import TrainConfig, Trainer


class Task:
    """A one-parameter model whose weight is the epoch count: easy to see which is restored."""

    def __init__(self) -> None:
        self.model = nn.Linear(1, 1, bias=False)
        self.batches: list[list[int]] = []

    def prepare(self, data: Dataset) -> tuple[nn.Module, int]:
        with torch.no_grad():
            self.model.weight.zero_()
        return self.model, 5

    def begin_epoch(self, rng: np.random.Generator) -> None:
        with torch.no_grad():
            self.model.weight += 1.0  # weight = epochs started

    def batch_loss(self, idx: np.ndarray, rng: np.random.Generator) -> tuple[torch.Tensor, int]:
        self.batches.append(sorted(idx.tolist()))
        return (self.model.weight * 0.0).sum(), len(idx)


DATA = split_leave_last_out("toy", [[0, 1, 2]], 3, ["a", "b", "c"], ["u"])


def test_early_stopping_restores_the_best_epoch() -> None:
    task = Task()
    scores = iter([0.1, 0.3, 0.2, 0.25, 0.9])
    cfg = TrainConfig(epochs=10, batch_size=2, patience=2, lr=0.0)
    best, epochs = Trainer(config=cfg).fit(task, DATA, lambda: next(scores))
    assert (best, epochs) == (0.3, 4)  # two evaluations without gain after epoch 2
    assert task.model.weight.item() == 2.0  # epoch 2's weights, not the last ones
    # Every epoch covers every sample once, in batches of at most batch_size.
    assert sorted(i for b in task.batches[:3] for i in b) == [0, 1, 2, 3, 4]
    assert [len(b) for b in task.batches[:3]] == [2, 2, 1]


def test_wall_clock_cap_stops_after_one_epoch() -> None:
    task = Task()
    cfg = TrainConfig(epochs=50, eval_every=5, max_seconds=0.0, lr=0.0)
    best, epochs = Trainer(config=cfg).fit(task, DATA, lambda: 0.5)
    assert (best, epochs) == (0.5, 1)


def test_per_model_defaults_are_typed_and_applied() -> None:
    sas = TRAIN_DEFAULTS["sasrec"]
    assert sas.config(quick=True, dataset="30music", seed=3) == TrainConfig(
        epochs=30, batch_size=256, patience=3, eval_every=2, max_seconds=40, seed=3
    )
    assert sas.config(quick=False, dataset="events", seed=0).batch_size == 32
    assert TRAIN_DEFAULTS["bpr"].config(quick=False, dataset="events", seed=0).batch_size == 1024
    dmm = make_model("dmmhyrec-noseq", 1, False, "30music")
    assert dmm.train_config == TrainConfig(  # type: ignore[attr-defined]
        epochs=200, batch_size=256, lr=3e-3, patience=3, eval_every=2, seed=1
    )
