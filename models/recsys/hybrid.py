"""Hybrid recommender: the fusion agent's scoring rule, offline.

The streaming fusion agent (``streams/fusion.py``) and this model score with the same function,
``models.fusion_rule.fuse``: a weighted sum of per-signal evidence, each signal scaled by its
maximum first. The offline stand-ins of the signals (``COMPONENT_SIGNAL``) are content KNN for
audio similarity, ItemKNN for co-plays, training counts for popularity and, when one is served,
the sequence model's relative probability ``exp(logit - max)``. Every component is fitted on
the training split, and the mixing weights are chosen on the validation split (grid over the
simplex, validation NDCG@10), never on test; ``mix_weights`` names them by signal (what
``resonate eval --fusion-weights-out`` publishes). It is also paper 2's "hybrid" recommender
(content KNN fused with a collaborative model).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from models.fusion_rule import SIGNALS, MixWeights, mix, relative_probability, scale_by_max
from models.recsys.baselines import Recommender
from models.recsys.data import Dataset
from models.recsys.metrics import full_ranking
from models.recsys.train import score_cases

log = logging.getLogger(__name__)

COMPONENT_SIGNAL: dict[str, str] = {
    "contentknn": "audio",
    "artistknn": "artist",
    "itemknn": "collab",
    "pop": "popularity",
    "sasrec": "sequence",
}
"""Which fusion signal each offline component stands for (a component may also be named by
its signal directly)."""


def signal_of(component: str) -> str:
    """The fusion signal of a component name (raises for a name that is neither)."""
    name = COMPONENT_SIGNAL.get(component, component)
    if name not in SIGNALS:
        raise KeyError(f"{component!r} is no fusion component; known: {sorted(COMPONENT_SIGNAL)}")
    return name


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


def signal(component: str, scores: np.ndarray) -> np.ndarray:
    """A component's scores [B, n_items] as its fusion signal, scaled by the row maximum: the
    sequence model's logits become relative probabilities first (as the agent receives them)."""
    raw = relative_probability(scores) if signal_of(component) == "sequence" else scores
    return scale_by_max(raw)


class HybridRec:
    """Weighted sum of scaled component scores; weights chosen on validation NDCG@10."""

    uses_types = True  # passes event types on to the components that use them

    def __init__(
        self,
        components: Sequence[tuple[str, Recommender]],
        config: HybridConfig | None = None,
    ) -> None:
        self.components = list(components)
        if len({signal_of(n) for n, _ in self.components}) < len(self.components):
            raise ValueError("two components stand for the same fusion signal")
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
        return [signal(n, score_cases(m, hist, list(users), types)) for n, m in self.components]

    def _mixed(self, parts: list[np.ndarray], weights: Sequence[float]) -> np.ndarray:
        named = [signal_of(n) for n, _ in self.components]
        w = MixWeights(**dict(zip(named, weights, strict=True)))
        return mix(dict(zip(named, parts, strict=True)), w)

    def mix_weights(self) -> MixWeights:
        """The fitted weights by fusion signal (``models.fusion_rule``)."""
        if not self.weights:
            raise RuntimeError("fit first")
        named = (signal_of(n) for n, _ in self.components)
        return MixWeights(**dict(zip(named, self.weights, strict=True)))

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
            res = full_ranking(
                self._mixed(parts, w), targets, hist, train.exclude_history, ks=(10,), seed=0
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
        """``models.fusion_rule.fuse`` of the components' signals [B, n_items]."""
        parts = self._scores(histories, users or [0] * len(histories), types)
        return self._mixed(parts, self.weights)
