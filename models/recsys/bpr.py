"""BPR-MF (Rendle et al., UAI 2009) as a single ``nn.Module``: user and item embeddings whose
dot product scores an item for a user, trained with the pairwise BPR loss (see train.py)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class BPRConfig:
    """Hyperparameters of BPR-MF."""

    dim: int = 64
    """Embedding size (default 64)."""
    init_std: float = 0.01
    """Std of the normal initialisation (default 0.01)."""


class BPRMF(nn.Module):
    """Matrix factorisation scored by ``<user_u, item_i>``."""

    def __init__(self, n_users: int, n_items: int, config: BPRConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or BPRConfig()
        self.user = nn.Embedding(n_users, cfg.dim)
        self.item = nn.Embedding(n_items, cfg.dim)
        nn.init.normal_(self.user.weight, std=cfg.init_std)
        nn.init.normal_(self.item.weight, std=cfg.init_std)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Scores of ``items`` [B] (or [B, M]) for ``users`` [B]."""
        u = self.user(users)
        v = self.item(items)
        if v.dim() == 3:
            return (u[:, None, :] * v).sum(-1)
        return (u * v).sum(-1)

    def all_scores(self, users: torch.Tensor) -> torch.Tensor:
        """Scores [B, n_items] of every item for ``users`` [B]."""
        return self.user(users) @ self.item.weight.T

    def bpr_loss(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        """Mean ``-log sigmoid(s_pos - s_neg)`` over the batch."""
        return -F.logsigmoid(self(users, pos) - self(users, neg)).mean()
