"""GRU4Rec (Hidasi et al., ICLR 2016) as one ``nn.Module``, following RecBole's gru4rec.py.

Item embedding (id 0 = padding, dataset item ``i`` is id ``i + 1``; + an event-type embedding
on skip-aware logs), embedding dropout, a GRU, and a dense layer mapping each hidden state back
to the embedding space, scored against the shared item table. It exposes the same
``forward``/``logits`` interface as SASRec so ``train.SeqCERec`` trains it with full-softmax
cross-entropy at every position (RecBole's ``CE`` loss, not the paper's session-parallel
BPR-max).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class GRU4RecConfig:
    """Hyperparameters of GRU4Rec (defaults follow RecBole)."""

    max_len: int = 50
    """Maximum history length (default 50)."""
    hidden: int = 64
    """Embedding size (default 64)."""
    gru_hidden: int = 128
    """GRU state size (default 128)."""
    n_layers: int = 1
    """GRU layers (default 1)."""
    dropout: float = 0.25
    """Dropout on the input embeddings (default 0.25)."""
    init_std: float = 0.02
    """Std of the normal embedding initialisation (default 0.02)."""


class GRU4Rec(nn.Module):
    """Recurrent next-item recommender."""

    def __init__(self, n_items: int, config: GRU4RecConfig | None = None, n_types: int = 0):
        super().__init__()
        self.config = cfg = config or GRU4RecConfig()
        self.n_items = n_items
        self.item_emb = nn.Embedding(n_items + 1, cfg.hidden, padding_idx=0)
        self.type_emb = nn.Embedding(n_types + 1, cfg.hidden, padding_idx=0) if n_types else None
        self.dropout = nn.Dropout(cfg.dropout)
        self.gru = nn.GRU(cfg.hidden, cfg.gru_hidden, cfg.n_layers, batch_first=True)
        self.dense = nn.Linear(cfg.gru_hidden, cfg.hidden)
        nn.init.normal_(self.item_emb.weight, std=cfg.init_std)
        if self.type_emb is not None:
            nn.init.normal_(self.type_emb.weight, std=cfg.init_std)

    def forward(self, seq: torch.Tensor, types: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states [B, L, hidden] for left-padded id sequences [B, L] (0 = padding) and
        optional type ids [B, L]. Left padding: the GRU reads the (zero) padding embeddings
        first, which only shifts its initial state; real positions never see later items."""
        x = self.item_emb(seq)
        if self.type_emb is not None and types is not None:
            x = x + self.type_emb(types)
        out, _ = self.gru(self.dropout(x))
        hidden: torch.Tensor = self.dense(out)
        return hidden

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Scores over the real items for hidden states [..., hidden]."""
        return hidden @ self.item_emb.weight[1:].T
