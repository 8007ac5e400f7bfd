"""Trainers that wrap the neural models as ``Recommender``s (see baselines.py).

* ``SASRecRec`` trains SASRec with full-softmax cross-entropy over all items at every position
  of each training window (the RecBole ``CE`` loss; chosen over the paper's BCE with one
  negative because it is fast and stronger on small catalogues).
* ``BPRRec`` trains BPR-MF with one uniformly sampled negative per (user, positive) pair.

Both evaluate validation NDCG@10 (full ranking, the dataset's history-exclusion rule) every
``eval_every`` epochs, keep the best weights and stop after ``patience`` evaluations without
improvement or when ``max_seconds`` is spent. Everything is seeded.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from models.recsys.bpr import BPRMF, BPRConfig
from models.recsys.data import Dataset
from models.recsys.metrics import full_ranking
from models.recsys.sasrec import SASRec, SASRecConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation hyperparameters shared by the neural trainers."""

    epochs: int = 200
    """Maximum number of epochs (default 200)."""
    batch_size: int = 256
    """Training batch size (default 256)."""
    lr: float = 1e-3
    """Adam learning rate (default 1e-3)."""
    weight_decay: float = 0.0
    """Adam L2 weight decay (default 0)."""
    patience: int = 10
    """Evaluations without validation NDCG@10 gain before stopping (default 10)."""
    eval_every: int = 1
    """Epochs between validation evaluations (default 1)."""
    max_seconds: float = 1e9
    """Wall-clock training budget in seconds (default: unlimited)."""
    seed: int = 0
    """Seed of torch and numpy (default 0)."""


def seed_all(seed: int) -> np.random.Generator:
    """Seed torch and return a seeded numpy generator."""
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def early_stopping_fit(
    model: torch.nn.Module,
    epoch_fn: Callable[[], float],
    valid_fn: Callable[[], float],
    cfg: TrainConfig,
) -> tuple[float, int]:
    """Run epochs with early stopping on ``valid_fn``; restore the best weights.

    Returns (best validation score, epochs run)."""
    best, best_state, bad = -1.0, copy.deepcopy(model.state_dict()), 0
    start = time.monotonic()
    epoch = 0
    for epoch in range(1, cfg.epochs + 1):
        loss = epoch_fn()
        if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
            score = valid_fn()
            log.info("epoch %d loss %.4f valid NDCG@10 %.4f", epoch, loss, score)
            if score > best:
                best, best_state, bad = score, copy.deepcopy(model.state_dict()), 0
            else:
                bad += 1
                if bad >= cfg.patience:
                    break
        if time.monotonic() - start > cfg.max_seconds:
            if best < 0:
                best = valid_fn()
                best_state = copy.deepcopy(model.state_dict())
            break
    model.load_state_dict(best_state)
    return best, epoch


Scorer = Callable[[list[list[int]], list[int]], np.ndarray]


def valid_ndcg10(scorer: Scorer, data: Dataset) -> float:
    """Mean validation NDCG@10 of a scorer ``(histories, users) -> scores``."""
    hist = [c.history for c in data.valid]
    scores = scorer(hist, [c.user for c in data.valid])
    res = full_ranking(scores, [c.target for c in data.valid], hist, data.exclude_history, ks=(10,))
    return float(res["NDCG@10"].mean())


class SASRecRec:
    """SASRec trained with full-softmax cross-entropy, as a ``Recommender``."""

    def __init__(
        self, config: SASRecConfig | None = None, train_config: TrainConfig | None = None
    ) -> None:
        self.config = config or SASRecConfig()
        self.train_config = train_config or TrainConfig()
        self.model: SASRec | None = None
        self.best_valid = float("nan")
        self.epochs_run = 0

    def _windows(self, seqs: Sequence[Sequence[int]]) -> np.ndarray:
        """Left-padded id windows [N, max_len + 1] covering every training transition."""
        span = self.config.max_len + 1
        rows: list[np.ndarray] = []
        for s in seqs:
            ids = np.asarray(s, dtype=np.int64) + 1
            end = len(ids)
            while end >= 2:
                chunk = ids[max(0, end - span) : end]
                rows.append(np.pad(chunk, (span - len(chunk), 0)))
                end -= self.config.max_len
        return np.stack(rows) if rows else np.zeros((0, span), dtype=np.int64)

    def pad(self, histories: Sequence[Sequence[int]]) -> torch.Tensor:
        """Left-padded id tensor [B, max_len] of the most recent history items."""
        m = self.config.max_len
        out = np.zeros((len(histories), m), dtype=np.int64)
        for b, h in enumerate(histories):
            tail = np.asarray(list(h)[-m:], dtype=np.int64) + 1
            if len(tail):
                out[b, m - len(tail) :] = tail
        return torch.from_numpy(out)

    def fit(self, train: Dataset) -> None:
        """Train on ``train.train`` with early stopping on ``train.valid``."""
        cfg = self.train_config
        rng = seed_all(cfg.seed)
        model = SASRec(train.n_items, self.config)
        self.model = model
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        windows = self._windows(train.train)

        def epoch() -> float:
            model.train()
            order = rng.permutation(len(windows))
            total, n = 0.0, 0
            for start in range(0, len(order), cfg.batch_size):
                batch = torch.from_numpy(windows[order[start : start + cfg.batch_size]])
                inp, tgt = batch[:, :-1], batch[:, 1:]
                keep = (tgt > 0) & (inp > 0)
                hidden = model(inp)[keep]
                loss = F.cross_entropy(model.logits(hidden), tgt[keep] - 1)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item() * int(keep.sum())
                n += int(keep.sum())
            return total / max(n, 1)

        self.best_valid, self.epochs_run = early_stopping_fit(
            model, epoch, lambda: valid_ndcg10(self.score, train), cfg
        )

    @torch.no_grad()
    def score(
        self, histories: Sequence[Sequence[int]], users: Sequence[int] | None = None
    ) -> np.ndarray:
        """Next-item logits [B, n_items]."""
        if self.model is None:
            raise RuntimeError("fit first")
        self.model.eval()
        outs = []
        for start in range(0, len(histories), 512):
            seq = self.pad(histories[start : start + 512])
            outs.append(self.model.last_logits(seq).numpy())
        return np.concatenate(outs).astype(np.float64)


class BPRRec:
    """BPR-MF with one uniform negative per positive, as a ``Recommender`` (needs users)."""

    def __init__(
        self, config: BPRConfig | None = None, train_config: TrainConfig | None = None
    ) -> None:
        self.config = config or BPRConfig()
        self.train_config = train_config or TrainConfig(batch_size=1024, lr=5e-3)
        self.model: BPRMF | None = None
        self.best_valid = float("nan")
        self.epochs_run = 0

    def fit(self, train: Dataset) -> None:
        """Train on the (user, item) pairs of ``train.train``."""
        cfg = self.train_config
        rng = seed_all(cfg.seed)
        model = BPRMF(train.n_users, train.n_items, self.config)
        self.model = model
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        users = np.array([u for u, s in enumerate(train.train) for _ in s], dtype=np.int64)
        items = np.array([i for s in train.train for i in s], dtype=np.int64)
        seen = {(int(u), int(i)) for u, i in zip(users, items, strict=True)}

        def epoch() -> float:
            model.train()
            order = rng.permutation(len(users))
            neg = rng.integers(0, train.n_items, size=len(users))
            clash = [(int(u), int(j)) in seen for u, j in zip(users, neg, strict=True)]
            for k in np.nonzero(clash)[0]:
                neg[k] = rng.integers(0, train.n_items)
            total = 0.0
            for start in range(0, len(order), cfg.batch_size):
                idx = order[start : start + cfg.batch_size]
                loss = model.bpr_loss(
                    torch.from_numpy(users[idx]),
                    torch.from_numpy(items[idx]),
                    torch.from_numpy(neg[idx]),
                )
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
            return total / max(len(order), 1)

        self.best_valid, self.epochs_run = early_stopping_fit(
            model, epoch, lambda: valid_ndcg10(self.score, train), cfg
        )

    @torch.no_grad()
    def score(
        self, histories: Sequence[Sequence[int]], users: Sequence[int] | None = None
    ) -> np.ndarray:
        """User-item dot products [B, n_items]; the history itself is not used."""
        if self.model is None:
            raise RuntimeError("fit first")
        if users is None:
            raise ValueError("BPR-MF scores users, pass users=")
        self.model.eval()
        u = torch.as_tensor(np.asarray(users, dtype=np.int64))
        return self.model.all_scores(u).numpy().astype(np.float64)
