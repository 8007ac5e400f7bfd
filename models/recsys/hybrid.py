"""Hybrid recommender: the fusion agent's scoring rule, offline.

The streaming fusion agent (``streams/fusion.py``) ranks candidates by a weighted sum of
per-signal scores, each scaled to [0, 1] first: audio similarity to the listener's profile
(content KNN), co-plays with recent tracks (item co-occurrence), popularity and, when one is
served, a trained sequence model. This is the same rule over full item rankings, so the
offline tables measure what the pipeline does: every component is fitted on the training
split, each row of its scores is min-max scaled, and the mixing weights are chosen on the
validation split (grid over the simplex, validation NDCG@10), never on test. It is also
paper 2's "hybrid" recommender (content KNN fused with a collaborative model).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from models.recsys.baselines import Recommender
from models.recsys.data import Dataset
from models.recsys.metrics import full_ranking
from models.recsys.train import score_cases

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HybridConfig:
    """Hyperparameters of the weight search."""

    step: float = 0.1
    """Grid step of the mixing weights on the simplex (default 0.1)."""


def simplex_grid(k: int, step: float) -> list[tuple[float, ...]]:
    """All weight vectors of ``k`` non-negative multiples of ``step`` that sum to 1."""
    n = round(1 / step)
    return [
        tuple(c / n for c in combo)
        for combo in itertools.product(range(n + 1), repeat=k)
        if sum(combo) == n
    ]


def scaled(scores: np.ndarray) -> np.ndarray:
    """Each row min-max scaled to [0, 1] (a constant row becomes 0), as the fusion agent
    scales each signal before mixing."""
    lo = scores.min(axis=1, keepdims=True)
    span = scores.max(axis=1, keepdims=True) - lo
    out: np.ndarray = (scores - lo) / np.where(span > 0, span, 1.0)
    return out


class HybridRec:
    """Weighted sum of scaled component scores; weights chosen on validation NDCG@10."""

    uses_types = True  # passes event types on to the components that use them

    def __init__(
        self,
        components: Sequence[tuple[str, Recommender]],
        config: HybridConfig | None = None,
    ) -> None:
        self.components = list(components)
        self.config = config or HybridConfig()
        self.weights: tuple[float, ...] = ()
        self.best_valid = float("nan")
        self.epochs_run = 0

    def _scores(
        self,
        histories: Sequence[Sequence[int]],
        users: Sequence[int],
        types: list[list[int]] | None = None,
    ) -> list[np.ndarray]:
        hist = [list(h) for h in histories]
        return [scaled(score_cases(m, hist, list(users), types)) for _, m in self.components]

    def fit(self, train: Dataset) -> None:
        """Fit every component, then pick the weights with the best validation NDCG@10.
        Without item side information the content component is left out."""
        if train.content is None:
            self.components = [(n, m) for n, m in self.components if n != "contentknn"]
        for name, model in self.components:
            log.info("hybrid: fitting %s", name)
            model.fit(train)
        self.epochs_run = max(int(getattr(m, "epochs_run", 0)) for _, m in self.components)
        hist = [c.history for c in train.valid]
        types = [c.history_types or [] for c in train.valid] if train.has_types else None
        parts = self._scores(hist, [c.user for c in train.valid], types)
        targets = [c.target for c in train.valid]
        best: tuple[float, tuple[float, ...]] = (-1.0, ())
        for w in simplex_grid(len(parts), self.config.step):
            mixed = sum(wi * p for wi, p in zip(w, parts, strict=True))
            res = full_ranking(
                np.asarray(mixed), targets, hist, train.exclude_history, ks=(10,), seed=0
            )
            ndcg = float(res["NDCG@10"].mean())
            if ndcg > best[0]:
                best = (ndcg, w)
        self.best_valid, self.weights = best
        log.info(
            "hybrid weights %s (valid NDCG@10 %.4f)",
            dict(zip((n for n, _ in self.components), self.weights, strict=True)),
            self.best_valid,
        )

    def score(
        self,
        histories: Sequence[Sequence[int]],
        users: Sequence[int] | None = None,
        types: list[list[int]] | None = None,
    ) -> np.ndarray:
        """The weighted sum of the components' scaled scores [B, n_items]."""
        parts = self._scores(histories, users or [0] * len(histories), types)
        out: np.ndarray = sum(w * p for w, p in zip(self.weights, parts, strict=True))  # type: ignore[assignment]
        return out
