"""Non-neural next-item baselines: Random, PopRank and session/sequence ItemKNN.

All recommenders follow the ``Recommender`` protocol: ``fit`` on a ``Dataset`` (its training
sequences only) and ``score`` a batch of chronological histories into a dense
``[B, n_items]`` float array (higher = better). History exclusion is left to the metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import scipy.sparse as sp

from models.recsys.data import Dataset


class Recommender(Protocol):
    """A next-item recommender over a fixed item catalogue."""

    def fit(self, train: Dataset) -> None:
        """Learn from ``train.train`` (and ``train.sessions()``); may peek at ``train.valid``
        for early stopping only."""
        ...

    def score(
        self, histories: Sequence[Sequence[int]], users: Sequence[int] | None = None
    ) -> np.ndarray:
        """Scores [B, n_items] for the next item after each history."""
        ...


class RandomRec:
    """Uniformly random scores (seeded)."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.n_items = 0

    def fit(self, train: Dataset) -> None:
        """Only records the catalogue size."""
        self.n_items = train.n_items

    def score(
        self, histories: Sequence[Sequence[int]], users: Sequence[int] | None = None
    ) -> np.ndarray:
        """Independent uniform scores."""
        return self.rng.random((len(histories), self.n_items))


class PopRank:
    """Global training popularity (number of plays)."""

    def __init__(self) -> None:
        self.pop = np.zeros(0)

    def fit(self, train: Dataset) -> None:
        """Count plays per item in the training sequences."""
        flat = [i for seq in train.train for i in seq]
        self.pop = np.bincount(np.asarray(flat, dtype=np.int64), minlength=train.n_items).astype(
            np.float64
        )

    def score(
        self, histories: Sequence[Sequence[int]], users: Sequence[int] | None = None
    ) -> np.ndarray:
        """The same popularity row for every history."""
        return np.tile(self.pop, (len(histories), 1))


@dataclass(frozen=True)
class ItemKNNConfig:
    """Hyperparameters of ItemKNN."""

    last_n: int = 5
    """Number of most recent history items whose neighbours are summed (default 5)."""
    decay: float = 0.8
    """Weight multiplier per step back in the history: item t-j gets ``decay**j`` (default 0.8)."""
    window: int = 0
    """Co-occurrence window inside a sequence; 0 = whole sequence/session (default 0)."""
    shrink: float = 10.0
    """Cosine shrinkage ``c_ij / (sqrt(n_i n_j) + shrink)`` damping rare items (default 10)."""
    pop_weight: float = 1e-6
    """Tiny popularity prior that breaks ties among items with no neighbour (default 1e-6)."""


class ItemKNN:
    """Item-item cosine similarity of co-occurrence in training sessions (or user sequences);
    the score of item j is ``sum_j' decay^age(j') * sim(j', j)`` over the last items j'."""

    def __init__(self, config: ItemKNNConfig | None = None) -> None:
        self.config = config or ItemKNNConfig()
        self.sim: sp.csr_matrix = sp.csr_matrix((0, 0))
        self.pop = np.zeros(0)

    def fit(self, train: Dataset) -> None:
        """Build the sparse cosine similarity matrix from training sessions."""
        n = train.n_items
        rows: list[int] = []
        cols: list[int] = []
        w = self.config.window
        r = 0
        for seq in train.sessions():
            if w <= 0:
                for i in set(seq):
                    rows.append(r)
                    cols.append(i)
                r += 1
            else:
                for start in range(max(1, len(seq) - w + 1)):
                    for i in set(seq[start : start + w]):
                        rows.append(r)
                        cols.append(i)
                    r += 1
        x = sp.csr_matrix((np.ones(len(rows)), (np.asarray(rows), np.asarray(cols))), shape=(r, n))
        co = (x.T @ x).tocoo()
        cnt = np.asarray(x.sum(axis=0)).ravel()
        keep = co.row != co.col
        data = co.data[keep] / (np.sqrt(cnt[co.row[keep]] * cnt[co.col[keep]]) + self.config.shrink)
        self.sim = sp.csr_matrix((data, (co.row[keep], co.col[keep])), shape=(n, n))
        flat = [i for seq in train.train for i in seq]
        pop = np.bincount(np.asarray(flat, dtype=np.int64), minlength=n).astype(np.float64)
        self.pop = pop / max(pop.max(), 1.0)

    def score(
        self, histories: Sequence[Sequence[int]], users: Sequence[int] | None = None
    ) -> np.ndarray:
        """Decayed sum of similarity rows of the last ``last_n`` history items."""
        n = self.sim.shape[0]
        q_rows: list[int] = []
        q_cols: list[int] = []
        q_vals: list[float] = []
        for b, hist in enumerate(histories):
            recent = list(hist)[-self.config.last_n :][::-1]
            for age, item in enumerate(recent):
                q_rows.append(b)
                q_cols.append(int(item))
                q_vals.append(self.config.decay**age)
        q = sp.csr_matrix((q_vals, (q_rows, q_cols)), shape=(len(histories), n))
        dense: np.ndarray = np.asarray((q @ self.sim).todense())
        return dense + self.config.pop_weight * self.pop[None, :]
