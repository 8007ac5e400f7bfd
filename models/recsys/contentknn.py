"""Content KNN (paper 2's training-free "KNN" recommender) over item side information.

Item vectors are the dataset's content rows (multi-hot tags on Last.fm), optionally TF-IDF
weighted (``idf = log(n_items / df)`` damps tags that nearly every item has), then
L2-normalised. A user is the mean of their history items' vectors; the score of an item is its
cosine similarity to that mean. Only items with content can be scored meaningfully; items
without content get score 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from models.recsys.data import Dataset


@dataclass(frozen=True)
class ContentKNNConfig:
    """Hyperparameters of ContentKNN."""

    tfidf: bool = True
    """Weight features by inverse document frequency over items (default True)."""
    last_n: int = 0
    """Use only the last n history items; 0 = the whole history (default 0)."""


class ContentKNN:
    """Cosine between each item's content vector and the mean of the history's vectors."""

    def __init__(self, config: ContentKNNConfig | None = None) -> None:
        self.config = config or ContentKNNConfig()
        self.items = np.zeros((0, 0))

    def fit(self, train: Dataset) -> None:
        """Normalise the content matrix (no learning); raises if the dataset has no content."""
        if train.content is None:
            raise ValueError(
                f"contentknn needs item side information, dataset {train.name!r} has none"
            )
        x = np.asarray(train.content, dtype=np.float64)
        if self.config.tfidf:
            df = (x > 0).sum(axis=0)
            x = x * np.log(x.shape[0] / np.maximum(df, 1))[None, :]
        norm = np.linalg.norm(x, axis=1, keepdims=True)
        self.items = x / np.where(norm > 0, norm, 1.0)

    def score(
        self, histories: Sequence[Sequence[int]], users: Sequence[int] | None = None
    ) -> np.ndarray:
        """Cosine [B, n_items] of every item to the mean content vector of each history."""
        q = np.zeros((len(histories), self.items.shape[1]))
        for b, hist in enumerate(histories):
            h = list(hist)[-self.config.last_n :] if self.config.last_n else list(hist)
            if h:
                q[b] = self.items[np.asarray(h, dtype=np.int64)].mean(axis=0)
        norm = np.linalg.norm(q, axis=1, keepdims=True)
        out: np.ndarray = (q / np.where(norm > 0, norm, 1.0)) @ self.items.T
        return out
