"""DMM-HyRec (paper 1, ``/work/shared/seeds/000_...``) as one ``nn.Module``, adapted to a
dot-product retrieval model so every item can be ranked (and served by ANN search).

* **Item representation** ``v_i = warm_i * E_id[i] + P c_i``: a learned ID embedding plus a
  linear projection of the item's content vector ``c_i`` (L2-normalised multi-hot tags on
  Last.fm, standing in for the paper's CNN audio embedding ``v_a``). ``warm_i`` is 0 for items
  never seen in training: their untrained (or negatively-sampled-only) ID embedding is noise,
  so they are represented by content alone -- the paper's item cold-start property.
* **Temporal user model**: Bi-LSTM over the last ``max_len`` = 50 history item vectors (+ an
  event-type embedding on skip-aware logs), additive self-attention
  ``e_t = v^T tanh(W h_t + b)``, ``alpha = softmax(e)`` masked over padding,
  ``u_seq = W_o sum_t alpha_t h_t``. Ablations: ``use_seq=False`` (NoSeq: mean of history
  item vectors instead of the Bi-LSTM), ``use_attn=False`` (NoAttn: Bi-LSTM output at the last
  real position), ``use_content=False`` (NoContent/NoAudio: no ``P c_i`` anywhere).
* **Gated fusion** ``u = lambda u_seq + (1 - lambda) u_prof`` with
  ``lambda = sigmoid(w^T [u_seq; u_prof] + b)`` per user, where ``u_prof = W_p mean_t P c_t``
  is the order-free *content profile* of the history (paper 2's KNN user vector, learned
  projection). Why: the paper's gate balances content and collaborative evidence; fusing on
  the user side (instead of the paper's item-side MLP ``sigma(W_out phi(W [v_u; v_a]))``)
  keeps the score a dot product ``s(u, i) = u . v_i``, which full ranking and ANN serving need.
  Without content, ``u_prof`` is the mean of the history ID embeddings (collaborative profile).

Trained with BPR on sampled negatives (the paper's loss; L2 via Adam weight decay) or full
softmax CE (``loss="ce"``); see ``train.DMMHyRecRec``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class DMMHyRecConfig:
    """Hyperparameters of DMM-HyRec."""

    max_len: int = 50
    """History length L fed to the Bi-LSTM (paper: 50 best of 10..100; default 50)."""
    dim: int = 64
    """Item/user vector size d; the Bi-LSTM has d/2 units per direction (default 64)."""
    dropout: float = 0.2
    """Dropout on the input item vectors and on the Bi-LSTM outputs (default 0.2)."""
    use_seq: bool = True
    """False = NoSeq ablation: mean of history item vectors instead of the Bi-LSTM."""
    use_attn: bool = True
    """False = NoAttn ablation: Bi-LSTM output at the last real position, no attention."""
    use_content: bool = True
    """False = NoContent (the paper's NoAudio) ablation: ID embeddings only."""
    loss: str = "bpr"
    """``"bpr"`` (sampled negatives, the paper's loss) or ``"ce"`` (full softmax)."""
    n_negatives: int = 8
    """Uniform negatives per positive for BPR (default 8)."""
    init_std: float = 0.02
    """Std of the normal initialisation of embeddings and linear weights (default 0.02)."""


class DMMHyRec(nn.Module):
    """Bi-LSTM + attention user encoder, gated with a content profile, dot-product scores."""

    content: torch.Tensor  # buffer [n_items + 1, F]: row 0 (padding) and content-less rows = 0
    warm: torch.Tensor  # buffer [n_items + 1]: 1 = use the ID embedding, 0 = content only

    def __init__(
        self,
        n_items: int,
        content: torch.Tensor | None = None,
        n_types: int = 0,
        config: DMMHyRecConfig | None = None,
    ) -> None:
        super().__init__()
        self.config = cfg = config or DMMHyRecConfig()
        d = cfg.dim
        if d % 2:
            raise ValueError("dim must be even (two LSTM directions of dim/2)")
        self.n_items = n_items
        self.item_emb = nn.Embedding(n_items + 1, d, padding_idx=0)  # id 0 = padding
        use_content = cfg.use_content and content is not None
        feats = content.shape[1] if content is not None and use_content else 1
        c = torch.zeros(n_items + 1, feats)
        if use_content and content is not None:
            # L2-normalised rows: items with many tags must not get larger vectors.
            c[1:] = F.normalize(content.float(), dim=1)
        self.register_buffer("content", c)  # [n_items + 1, F]
        self.content_proj = nn.Linear(feats, d, bias=False) if use_content else None
        self.register_buffer("warm", torch.ones(n_items + 1))  # [n_items + 1]; see set_warm
        self.type_emb = nn.Embedding(n_types + 1, d, padding_idx=0) if n_types else None
        self.lstm = nn.LSTM(d, d // 2, batch_first=True, bidirectional=True)
        self.att_w = nn.Linear(d, d)
        self.att_v = nn.Linear(d, 1, bias=False)
        self.seq_out = nn.Linear(d, d)
        self.prof_out = nn.Linear(d, d)
        self.gate = nn.Linear(2 * d, 1)
        self.dropout = nn.Dropout(cfg.dropout)
        for m in self.modules():
            if isinstance(m, nn.Linear | nn.Embedding):
                nn.init.normal_(m.weight, std=cfg.init_std)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

    def set_warm(self, seen: torch.Tensor) -> None:
        """Mark which items (bool [n_items], dataset indices) were seen in training; unseen
        items that have content are represented by their content projection only."""
        has_content = self.content[1:].abs().sum(1) > 0
        warm = torch.ones(self.n_items + 1)
        warm[1:] = (seen | ~has_content).float()
        self.warm.copy_(warm)

    def tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(``v_i``, ``P c_i``) for all ids including padding, each [n_items + 1, d]. Projecting
        the whole catalogue once per batch is much cheaper than projecting every history
        position's content vector (B * L rows) and is reused for inputs, targets and scores."""
        d = self.config.dim
        if self.content_proj is None:
            cont = torch.zeros(self.n_items + 1, d)
        else:
            cont = self.content_proj(self.content)
        return self.warm[:, None] * self.item_emb.weight + cont, cont

    def all_items(self) -> torch.Tensor:
        """``v_i`` of the real items [n_items, d]."""
        return self.tables()[0][1:]

    def encode(
        self, seq: torch.Tensor, types: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """User vectors [B, d], attention weights [B, L] (zero on padding; uniform for NoSeq,
        one-hot on the last item for NoAttn) and gates lambda [B] for right-padded id
        sequences [B, L] (0 = padding) and optional type ids [B, L] (0 = padding)."""
        mask = seq > 0  # [B, L]
        # An empty history becomes one padding step so softmax/packing stay defined.
        lengths = mask.sum(1).clamp(min=1)  # [B]
        mask = mask | (torch.arange(seq.shape[1])[None] == 0)
        table, cont = self.tables()  # [n_items + 1, d] each
        x = table[seq]  # [B, L, d]; padding id 0 -> zero vector
        if self.type_emb is not None and types is not None:
            x = x + self.type_emb(types)
        x = self.dropout(x)
        if self.config.use_seq:
            packed = nn.utils.rnn.pack_padded_sequence(
                x, lengths.cpu(), batch_first=True, enforce_sorted=False
            )
            out, _ = self.lstm(packed)
            h, _ = nn.utils.rnn.pad_packed_sequence(
                out, batch_first=True, total_length=seq.shape[1]
            )  # [B, L, d] = [forward ; backward] states
            h = self.dropout(h)
            if self.config.use_attn:
                e = self.att_v(torch.tanh(self.att_w(h))).squeeze(-1)  # [B, L]
                alpha = torch.softmax(e.masked_fill(~mask, float("-inf")), dim=1)
            else:
                alpha = F.one_hot(lengths - 1, seq.shape[1]).float()  # last real position
        else:
            h = x
            alpha = mask.float() / lengths[:, None]
        u_seq = self.seq_out((alpha[..., None] * h).sum(1))  # [B, d]
        if self.content_proj is not None:
            prof_items = cont[seq]
        else:
            prof_items = table[seq]
        prof = (prof_items * (seq > 0)[..., None]).sum(1) / lengths[:, None]  # [B, d]
        u_prof = self.prof_out(prof)
        lam = torch.sigmoid(self.gate(torch.cat([u_seq, u_prof], dim=1)))  # [B, 1]
        return lam * u_seq + (1 - lam) * u_prof, alpha, lam.squeeze(1)

    def scores(self, seq: torch.Tensor, types: torch.Tensor | None = None) -> torch.Tensor:
        """Scores [B, n_items] of every real item after each history."""
        user, _, _ = self.encode(seq, types)
        return user @ self.all_items().T

    def loss(
        self,
        seq: torch.Tensor,
        types: torch.Tensor | None,
        target: torch.Tensor,
        negatives: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """BPR loss (``negatives`` [B, K] dataset indices) or full-softmax CE (``None``) for
        targets [B] (dataset indices)."""
        user, _, _ = self.encode(seq, types)  # [B, d]
        items = self.all_items()  # [n_items, d]
        if negatives is None:
            return F.cross_entropy(user @ items.T, target)
        pos = (user * items[target]).sum(-1)  # [B]
        neg = (user[:, None] * items[negatives]).sum(-1)  # [B, K]
        return -F.logsigmoid(pos[:, None] - neg).mean()
