"""Trainers that wrap the neural models as ``Recommender``s (see baselines.py).

* ``SASRecRec`` trains SASRec with full-softmax cross-entropy over all items at every position
  of each training window (the RecBole ``CE`` loss; chosen over the paper's BCE with one
  negative because it is fast and stronger on small catalogues).
* ``BPRRec`` trains BPR-MF with one uniformly sampled negative per (user, positive) pair.
* ``GRU4RecRec`` trains GRU4Rec with the same loop as SASRec (``SeqCERec``).
* ``DMMHyRecRec`` trains DMM-HyRec on (history prefix, next positive item) samples with BPR
  over sampled negatives or full-softmax CE.

Skip-aware logs (``Dataset.has_types``): the sequence models add an event-type embedding to
their inputs, and only positive events (play/like) are training targets -- a skip is never
something to recommend. SASRec goes further and reads skips as negative evidence, not as
context (``TypedSASRec``, the unlikelihood term of ``SeqCERec``, prediction at the last
positive event). ``score(..., types=...)`` takes the history types; use
``score_cases`` to call any ``Recommender`` with or without them.

Each is a ``TrainTask`` (``prepare``: model and samples; ``batch_loss``) run by one ``Trainer``
(RecBole-like: the model defines loss and score, the trainer owns the loop): seeding, Adam,
shuffled mini-batches, validation NDCG@10 (full ranking, the dataset's history-exclusion rule)
every ``eval_every`` epochs, the best weights kept, a stop after ``patience`` evaluations
without improvement or when ``max_seconds`` is spent. Per-model defaults (full and quick runs)
are ``evaluate.TRAIN_DEFAULTS``.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.recsys.bpr import BPRMF, BPRConfig
from models.recsys.data import SKIP, Dataset
from models.recsys.dmmhyrec import DMMHyRec, DMMHyRecConfig
from models.recsys.gru4rec import GRU4Rec, GRU4RecConfig
from models.recsys.metrics import full_ranking
from models.recsys.sasrec import SASRecConfig, TypedSASRec

N_TYPES = 3
"""play / skip / like; model type ids are ``code + 1`` (0 = padding)."""

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
    skip_unlikelihood: float = 1.0
    """Typed logs only: weight of the unlikelihood term ``-log(1 - p(skipped item))`` at
    positions whose next event is a skip, so a skip is negative evidence, not just an input
    (0 = skips are inputs only; default 1)."""


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


class TrainTask(Protocol):
    """The model contract of ``Trainer``: build the model and its training samples, then the
    loss of a batch of sample indices. The trainer owns seeding, the optimiser, epochs, early
    stopping on validation NDCG@10 and the caps (``TrainConfig``)."""

    def prepare(self, data: Dataset) -> tuple[nn.Module, int]:
        """A fresh model (set it on the recommender, for validation scoring) and the number of
        training samples; must not draw from the numpy generator."""
        ...

    def begin_epoch(self, rng: np.random.Generator) -> None:
        """Per-epoch resampling (after the sample order is drawn); usually nothing."""
        ...

    def batch_loss(self, idx: np.ndarray, rng: np.random.Generator) -> tuple[torch.Tensor, int]:
        """The loss of the samples ``idx`` and how many targets it averages (for logging)."""
        ...


class Trainer:
    """Mini-batch Adam over a ``TrainTask`` with early stopping (RecBole-like: models define
    the loss and the score, the trainer owns the loop)."""

    def __init__(self, *, config: TrainConfig) -> None:
        self.config = config

    def fit(
        self, task: TrainTask, data: Dataset, valid_fn: Callable[[], float]
    ) -> tuple[float, int]:
        """Seed, build, train; returns (best validation score, epochs run), best weights kept."""
        cfg = self.config
        rng = seed_all(cfg.seed)
        model, n = task.prepare(data)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

        def epoch() -> float:
            model.train()
            order = rng.permutation(n)
            task.begin_epoch(rng)
            total, count = 0.0, 0
            for start in range(0, n, cfg.batch_size):
                loss, k = task.batch_loss(order[start : start + cfg.batch_size], rng)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item() * k
                count += k
            return total / max(count, 1)

        return early_stopping_fit(model, epoch, valid_fn, cfg)


def score_cases(
    model: object,
    histories: list[list[int]],
    users: list[int],
    types: list[list[int]] | None = None,
) -> np.ndarray:
    """``model.score`` with the history types if the model uses them (``uses_types``)."""
    if types is not None and getattr(model, "uses_types", False):
        out: np.ndarray = model.score(histories, users, types=types)  # type: ignore[attr-defined]
        return out
    res: np.ndarray = model.score(histories, users)  # type: ignore[attr-defined]
    return res


def valid_ndcg10(model: object, data: Dataset) -> float:
    """Mean validation NDCG@10 of a ``Recommender``."""
    hist = [c.history for c in data.valid]
    types = [c.history_types or [] for c in data.valid] if data.has_types else None
    scores = score_cases(model, hist, [c.user for c in data.valid], types)
    res = full_ranking(scores, [c.target for c in data.valid], hist, data.exclude_history, ks=(10,))
    return float(res["NDCG@10"].mean())


def _pad_left(rows: Sequence[Sequence[int]], m: int, shift: int = 1) -> torch.Tensor:
    """Left-padded tensor [B, m] of the last m values of each row, plus ``shift``."""
    out = np.zeros((len(rows), m), dtype=np.int64)
    for b, h in enumerate(rows):
        tail = np.asarray(list(h)[-m:], dtype=np.int64) + shift
        if len(tail):
            out[b, m - len(tail) :] = tail
    return torch.from_numpy(out)


class SeqCERec:
    """A causal sequence model (``forward(seq, types) -> [B, L, h]``, ``logits``) trained with
    full-softmax cross-entropy at every position of each training window."""

    uses_types = True

    def __init__(self, max_len: int, train_config: TrainConfig | None = None) -> None:
        self.max_len = max_len
        self.train_config = train_config or TrainConfig()
        self.model: torch.nn.Module | None = None
        self.best_valid = float("nan")
        self.epochs_run = 0
        self.typed = False

    def build(self, n_items: int, n_types: int) -> torch.nn.Module:
        """A fresh model (subclasses)."""
        raise NotImplementedError

    def _windows(
        self, seqs: Sequence[Sequence[int]], types: Sequence[Sequence[int]] | None = None
    ) -> np.ndarray:
        """Left-padded windows [N, 2, max_len + 1] (ids, type ids) covering every transition."""
        span = self.max_len + 1
        rows: list[np.ndarray] = []
        for k, s in enumerate(seqs):
            ids = np.asarray(s, dtype=np.int64) + 1
            tys = np.asarray(types[k], dtype=np.int64) + 1 if types else np.ones_like(ids)
            end = len(ids)
            while end >= 2:
                lo = max(0, end - span)
                pair = np.stack([ids[lo:end], tys[lo:end]])
                rows.append(np.pad(pair, ((0, 0), (span - (end - lo), 0))))
                end -= self.max_len
        return np.stack(rows) if rows else np.zeros((0, 2, span), dtype=np.int64)

    def pad(self, histories: Sequence[Sequence[int]]) -> torch.Tensor:
        """Left-padded id tensor [B, max_len] of the most recent history items."""
        return _pad_left(histories, self.max_len)

    def fit(self, train: Dataset) -> None:
        """Train on ``train.train`` with early stopping on ``train.valid`` (``Trainer``)."""
        self.best_valid, self.epochs_run = Trainer(config=self.train_config).fit(
            self, train, lambda: valid_ndcg10(self, train)
        )

    def prepare(self, data: Dataset) -> tuple[nn.Module, int]:
        """A fresh model and the training windows (``TrainTask``)."""
        self.typed = data.has_types
        self.model = self.build(data.n_items, N_TYPES if self.typed else 0)
        self._train_windows = self._windows(data.train, data.train_types if self.typed else None)
        return self.model, len(self._train_windows)

    def begin_epoch(self, rng: np.random.Generator) -> None:
        """Nothing to resample (``TrainTask``)."""

    def batch_loss(self, idx: np.ndarray, rng: np.random.Generator) -> tuple[torch.Tensor, int]:
        """Full-softmax CE at every position whose target is positive, plus the skip
        unlikelihood on typed logs (``TrainTask``)."""
        model, cfg = self.model, self.train_config
        assert model is not None
        batch = torch.from_numpy(self._train_windows[idx])
        inp, tgt = batch[:, 0, :-1], batch[:, 0, 1:]
        # Skips are inputs only: never a target (type id of a skip is SKIP + 1).
        valid = (tgt > 0) & (inp > 0)
        skipped = valid & (batch[:, 1, 1:] == SKIP + 1)
        keep = valid & ~skipped
        hidden = model(inp, batch[:, 1, :-1] if self.typed else None)  # [B, L, h]
        loss = F.cross_entropy(model.logits(hidden[keep]), tgt[keep] - 1)  # type: ignore[operator]
        if self.typed and cfg.skip_unlikelihood > 0 and bool(skipped.any()):
            # Unlikelihood (Welleck et al. 2019): lower the probability the model gave the
            # track the listener then skipped.
            probs = torch.softmax(model.logits(hidden[skipped]), dim=-1)  # type: ignore[operator]
            p_skip = probs.gather(1, (tgt[skipped] - 1)[:, None]).squeeze(1)
            unlike = -torch.log1p(-p_skip.clamp(max=1 - 1e-6)).mean()
            loss = loss + cfg.skip_unlikelihood * unlike
        return loss, int(keep.sum())

    @torch.no_grad()
    def score(
        self,
        histories: Sequence[Sequence[int]],
        users: Sequence[int] | None = None,
        types: Sequence[Sequence[int]] | None = None,
    ) -> np.ndarray:
        """Next-item logits [B, n_items] (``types``: history event types, typed data only)."""
        if self.model is None:
            raise RuntimeError("fit first")
        self.model.eval()
        outs = []
        for start in range(0, len(histories), 512):
            seq = self.pad(histories[start : start + 512])
            ty = _pad_left(types[start : start + 512], self.max_len) if types else None
            states = self.model(seq, ty if self.typed else None)  # [B, L, h]
            last = torch.full((len(seq),), self.max_len - 1)
            if self.typed and ty is not None:
                # Predict from the last positive event: a trailing skip says what not to play,
                # not where the listener is (reading the last event instead cost 0.03 NDCG@10
                # on the synthetic log, docs/results.md).
                at = (torch.arange(self.max_len)[None] * ((ty > 0) & (ty != SKIP + 1))).amax(1)
                last = torch.where(at > 0, at, last)
            hidden = states[torch.arange(len(seq)), last]
            outs.append(self.model.logits(hidden).numpy())  # type: ignore[operator]
        return np.concatenate(outs).astype(np.float64)


class SASRecRec(SeqCERec):
    """SASRec trained with full-softmax cross-entropy, as a ``Recommender``."""

    def __init__(
        self, config: SASRecConfig | None = None, train_config: TrainConfig | None = None
    ) -> None:
        self.config = config or SASRecConfig()
        super().__init__(self.config.max_len, train_config)

    def build(self, n_items: int, n_types: int) -> torch.nn.Module:
        """A fresh (typed) SASRec."""
        return TypedSASRec(n_items, self.config, n_types)


class GRU4RecRec(SeqCERec):
    """GRU4Rec trained with full-softmax cross-entropy, as a ``Recommender``."""

    def __init__(
        self, config: GRU4RecConfig | None = None, train_config: TrainConfig | None = None
    ) -> None:
        self.config = config or GRU4RecConfig()
        super().__init__(self.config.max_len, train_config)

    def build(self, n_items: int, n_types: int) -> torch.nn.Module:
        """A fresh GRU4Rec."""
        return GRU4Rec(n_items, self.config, n_types)


def _pad_right(rows: Sequence[Sequence[int]], m: int) -> torch.Tensor:
    """Right-padded tensor [B, m] of the last m values + 1 of each row (0 = padding)."""
    out = np.zeros((len(rows), m), dtype=np.int64)
    for b, h in enumerate(rows):
        tail = np.asarray(list(h)[-m:], dtype=np.int64) + 1
        out[b, : len(tail)] = tail
    return torch.from_numpy(out)


class DMMHyRecRec:
    """DMM-HyRec as a ``Recommender``: one sample per (history prefix, next positive item)."""

    uses_types = True

    def __init__(
        self, config: DMMHyRecConfig | None = None, train_config: TrainConfig | None = None
    ) -> None:
        self.config = config or DMMHyRecConfig()
        self.train_config = train_config or TrainConfig()
        self.model: DMMHyRec | None = None
        self.best_valid = float("nan")
        self.epochs_run = 0
        self.typed = False

    def fit(self, train: Dataset) -> None:
        """Train on every transition of ``train.train`` with early stopping on ``train.valid``."""
        self.best_valid, self.epochs_run = Trainer(config=self.train_config).fit(
            self, train, lambda: valid_ndcg10(self, train)
        )

    def prepare(self, data: Dataset) -> tuple[nn.Module, int]:
        """A fresh model (warm = items seen in training) and the (prefix, next positive item)
        samples (``TrainTask``)."""
        mc = self.config
        self.typed = data.has_types
        content = torch.from_numpy(data.content) if data.content is not None else None
        model = DMMHyRec(data.n_items, content, N_TYPES if self.typed else 0, mc)
        seen = torch.zeros(data.n_items, dtype=torch.bool)
        for s in data.train:
            seen[torch.as_tensor(s, dtype=torch.long)] = True
        model.set_warm(seen)
        self.model = model
        self.n_items = data.n_items
        prefixes: list[list[int]] = []
        ptypes: list[list[int]] = []
        targets: list[int] = []
        for u, s in enumerate(data.train):
            ts = data.train_types[u] if self.typed else [0] * len(s)
            for t in range(1, len(s)):
                if ts[t] != SKIP:
                    lo = max(0, t - mc.max_len)
                    prefixes.append(s[lo:t])
                    ptypes.append(ts[lo:t])
                    targets.append(s[t])
        self._seqs = _pad_right(prefixes, mc.max_len)
        self._tys = _pad_right(ptypes, mc.max_len) * (self._seqs > 0)
        self._tgt = torch.as_tensor(targets, dtype=torch.long)
        return model, len(targets)

    def begin_epoch(self, rng: np.random.Generator) -> None:
        """Nothing to resample (``TrainTask``)."""

    def batch_loss(self, idx: np.ndarray, rng: np.random.Generator) -> tuple[torch.Tensor, int]:
        """BPR over ``n_negatives`` uniform negatives, or CE (``TrainTask``)."""
        model, mc = self.model, self.config
        assert model is not None
        at = torch.from_numpy(idx)
        neg = None
        if mc.loss == "bpr":
            neg = torch.from_numpy(rng.integers(0, self.n_items, (len(idx), mc.n_negatives)))
        tys = self._tys[at] if self.typed else None
        return model.loss(self._seqs[at], tys, self._tgt[at], neg), len(idx)

    @torch.no_grad()
    def score(
        self,
        histories: Sequence[Sequence[int]],
        users: Sequence[int] | None = None,
        types: Sequence[Sequence[int]] | None = None,
    ) -> np.ndarray:
        """Scores [B, n_items] (``types``: history event types, typed data only)."""
        if self.model is None:
            raise RuntimeError("fit first")
        self.model.eval()
        m = self.config.max_len
        outs = []
        for start in range(0, len(histories), 512):
            seq = _pad_right(histories[start : start + 512], m)
            ty = _pad_right(types[start : start + 512], m) * (seq > 0) if types else None
            outs.append(self.model.scores(seq, ty if self.typed else None).numpy())
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
        self.best_valid, self.epochs_run = Trainer(config=self.train_config).fit(
            self, train, lambda: valid_ndcg10(self, train)
        )

    def prepare(self, data: Dataset) -> tuple[nn.Module, int]:
        """A fresh model and the (user, item) training pairs (``TrainTask``)."""
        self.model = BPRMF(data.n_users, data.n_items, self.config)
        self.n_items = data.n_items
        self._users = np.array([u for u, s in enumerate(data.train) for _ in s], dtype=np.int64)
        self._items = np.array([i for s in data.train for i in s], dtype=np.int64)
        self._seen = {(int(u), int(i)) for u, i in zip(self._users, self._items, strict=True)}
        return self.model, len(self._users)

    def begin_epoch(self, rng: np.random.Generator) -> None:
        """One uniform negative per pair for this epoch, redrawn where it is a positive."""
        neg = rng.integers(0, self.n_items, size=len(self._users))
        clash = [(int(u), int(j)) in self._seen for u, j in zip(self._users, neg, strict=True)]
        for k in np.nonzero(clash)[0]:
            neg[k] = rng.integers(0, self.n_items)
        self._neg = neg

    def batch_loss(self, idx: np.ndarray, rng: np.random.Generator) -> tuple[torch.Tensor, int]:
        """BPR loss of the batch's (user, positive, negative) triples (``TrainTask``)."""
        assert self.model is not None
        loss = self.model.bpr_loss(
            torch.from_numpy(self._users[idx]),
            torch.from_numpy(self._items[idx]),
            torch.from_numpy(self._neg[idx]),
        )
        return loss, len(idx)

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
