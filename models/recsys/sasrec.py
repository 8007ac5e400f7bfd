"""SASRec (Kang & McAuley, ICDM 2018) as a single ``nn.Module``, following RecBole's sasrec.py.

Item embedding (id 0 = padding, item ``i`` of the dataset is id ``i + 1``) plus learned
positional embedding, LayerNorm and dropout, then ``n_layers`` post-LN transformer blocks
(causal self-attention + GELU feed-forward, residual + LayerNorm, as RecBole's
``TransformerEncoder``), and the output at every position is scored against the shared item
embedding table. Training uses full-softmax cross-entropy over all items (RecBole's
``loss_type="CE"``), not the paper's BCE with one sampled negative: on small catalogues the
full softmax is cheap and clearly stronger.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from models.recsys.data import SKIP


@dataclass(frozen=True)
class SASRecConfig:
    """Hyperparameters of SASRec (defaults follow RecBole / S3-Rec on Last.fm)."""

    max_len: int = 50
    """Maximum history length; older items are cut (default 50)."""
    hidden: int = 64
    """Embedding and hidden size (default 64)."""
    n_layers: int = 2
    """Number of transformer blocks (default 2)."""
    n_heads: int = 1
    """Attention heads (default 1)."""
    inner: int = 256
    """Feed-forward inner size, RecBole's ``inner_size`` (default 256)."""
    hidden_dropout: float = 0.5
    """Dropout on embeddings, attention output and feed-forward (default 0.5)."""
    attn_dropout: float = 0.2
    """Dropout on the attention probabilities (default 0.2)."""
    init_std: float = 0.02
    """Std of the normal weight initialisation, RecBole's ``initializer_range`` (default 0.02)."""


class SASRec(nn.Module):
    """Causal self-attentive sequential recommender."""

    def __init__(self, n_items: int, config: SASRecConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or SASRecConfig()
        self.n_items = n_items
        self.item_emb = nn.Embedding(n_items + 1, cfg.hidden, padding_idx=0)
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.hidden)
        self.norm = nn.LayerNorm(cfg.hidden, eps=1e-12)
        self.dropout = nn.Dropout(cfg.hidden_dropout)
        layer = nn.TransformerEncoderLayer(
            d_model=cfg.hidden,
            nhead=cfg.n_heads,
            dim_feedforward=cfg.inner,
            dropout=cfg.hidden_dropout,
            activation="gelu",
            batch_first=True,
            norm_first=False,
            layer_norm_eps=1e-12,
        )
        self.encoder = nn.TransformerEncoder(layer, cfg.n_layers, enable_nested_tensor=False)
        for blk in self.encoder.layers:
            blk.self_attn.dropout = cfg.attn_dropout  # type: ignore[union-attr]
        self.apply(self._init)

    def _init(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, std=self.config.init_std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        """Hidden states [B, L, hidden] for left-padded id sequences [B, L] (0 = padding)."""
        length = seq.shape[1]
        pos = torch.arange(length, device=seq.device)
        x = self.item_emb(seq) + self.pos_emb(pos)[None]
        x = self.dropout(self.norm(x))
        causal = torch.triu(
            torch.ones(length, length, dtype=torch.bool, device=seq.device), diagonal=1
        )
        # Left padding + causal mask: every query position sees itself, so no row is empty;
        # padding keys are masked as in RecBole's extended attention mask.
        pad = seq == 0
        mask = causal[None] | pad[:, None, :]
        eye = torch.eye(length, dtype=torch.bool, device=seq.device)[None]
        mask = mask & ~eye
        attn_mask = mask.repeat_interleave(self.config.n_heads, dim=0)
        out: torch.Tensor = self.encoder(x, mask=attn_mask)
        return out

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Scores over the real items (ids 1..n_items) for hidden states [..., hidden]."""
        return hidden @ self.item_emb.weight[1:].T

    def last_logits(self, seq: torch.Tensor) -> torch.Tensor:
        """Next-item scores [B, n_items] after left-padded sequences [B, L]."""
        return self.logits(self.forward(seq)[:, -1])


class TypedSASRec(SASRec):
    """SASRec with an optional event-type embedding added to the item embedding.

    Skips are read as negative evidence, not as context: no other position attends to a skip
    and positions count positive events only, so the states of the positive events are
    exactly those of the same history with its skips removed; a skip's own state sees the
    skip (it is trained to predict the next positive after it), and the unlikelihood term of
    ``SeqCERec`` pushes down the skipped track.
    """

    def __init__(self, n_items: int, config: SASRecConfig | None = None, n_types: int = 0):
        super().__init__(n_items, config)
        self.type_emb = (
            nn.Embedding(n_types + 1, self.config.hidden, padding_idx=0) if n_types else None
        )
        if self.type_emb is not None:
            nn.init.normal_(self.type_emb.weight, std=self.config.init_std)

    def forward(self, seq: torch.Tensor, types: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states [B, L, hidden]; see ``SASRec.forward`` (types [B, L], 0 = padding)."""
        if self.type_emb is None or types is None:
            return super().forward(seq)
        # SASRec.forward with the type embedding added and skips taken out of the context.
        length = seq.shape[1]
        skip = types == SKIP + 1  # [B, L]
        positive = (seq > 0) & ~skip
        # Position = L - 1 - (positives after this event): a skip shares the position of the
        # positive before it, and the positives are placed as if the skips were not there.
        after = positive.flip(1).long().cumsum(1).flip(1) - positive.long()  # [B, L]
        pos = (length - 1 - after).clamp(min=0)
        x = self.item_emb(seq) + self.type_emb(types) + self.pos_emb(pos)
        x = self.dropout(self.norm(x))
        causal = torch.triu(torch.ones(length, length, dtype=torch.bool), diagonal=1)
        eye = torch.eye(length, dtype=torch.bool)[None]
        mask = (causal[None] | ((seq == 0) | skip)[:, None, :]) & ~eye
        out: torch.Tensor = self.encoder(x, mask=mask.repeat_interleave(self.config.n_heads, dim=0))
        return out
