"""MusiCNN (Pons & Serra, MSD_musicnn) re-implemented in PyTorch, inference only.

Mirrors ``musicnn.models.build_musicnn`` layer by layer so the TF checkpoint can be loaded
unchanged (see ``models.convert_musicnn``). Tensors use NCHW with H = time, W = mel band.
TF details that matter for parity:

* every ``conv -> relu -> batch_norm`` (BN *after* the activation), BN epsilon 1e-3;
* the temporal convs use TF ``'same'`` padding, which for even kernels puts the extra zero
  *after* the signal (k=128 pads 63 before, 64 after);
* the mid-end convs span all input "width", so they are 1-D convs over time;
* the back-end flattens ``concat([max, mean], axis=2)`` of shape [B, C, 2], so max and mean
  features are *interleaved* (max_0, mean_0, max_1, ...);
* musicnn's "penultimate" feature is the dense layer *after* its batch norm.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class MusiCNNConfig:
    """Hyperparameters of ``musicnn.models.build_musicnn``; defaults are MSD_musicnn's."""

    n_mels: int = 96  # mel bands of the input patch
    timbral_filters: int = 204  # int(1.6 * 128) filters per timbral conv
    timbral_time: int = 7  # time extent of the timbral kernels
    timbral_mel_fracs: tuple[float, ...] = (0.4, 0.7)  # kernel height = int(frac * n_mels)
    temporal_filters: int = 51  # int(1.6 * 32) filters per temporal conv
    temporal_kernels: tuple[int, ...] = (128, 64, 32)  # time extents of the temporal convs
    midend_filters: int = 64  # filters of each mid-end conv
    midend_kernel: int = 7  # time extent of the mid-end convs
    midend_layers: int = 3  # conv1 + residual conv2, conv3
    embed_dim: int = 200  # penultimate dense width
    n_tags: int = 50  # output tags (MSD top-50)
    bn_eps: float = 1e-3  # tf.compat.v1.layers.batch_normalization default

    @property
    def frontend_channels(self) -> int:
        """Channels produced by the concatenated timbral + temporal branches (561)."""
        timbral = self.timbral_filters * len(self.timbral_mel_fracs)
        return timbral + self.temporal_filters * len(self.temporal_kernels)

    @property
    def pooled_channels(self) -> int:
        """Channels fed to temporal pooling: front end plus every mid-end output (753)."""
        return self.frontend_channels + self.midend_filters * self.midend_layers


def _same_pad(kernel: int) -> tuple[int, int]:
    """TF 'same' padding for stride 1: the odd extra zero goes at the end."""
    total = kernel - 1
    return total // 2, total - total // 2


class MusiCNN(nn.Module):
    """mel [B, T, n_mels] -> (penultimate embedding [B, embed_dim], tag probs [B, n_tags])."""

    def __init__(self, config: MusiCNNConfig | None = None) -> None:
        super().__init__()
        cfg = config or MusiCNNConfig()
        self.config = cfg
        self.input_bn = nn.BatchNorm2d(1, eps=cfg.bn_eps)
        # Timbral: tall-in-mel kernels catch spectral envelopes; 'valid' in mel, padded in time.
        self.timbral = nn.ModuleList(
            nn.Conv2d(1, cfg.timbral_filters, (cfg.timbral_time, int(f * cfg.n_mels)))
            for f in cfg.timbral_mel_fracs
        )
        self.timbral_bn = nn.ModuleList(
            nn.BatchNorm2d(cfg.timbral_filters, eps=cfg.bn_eps) for _ in cfg.timbral_mel_fracs
        )
        # Temporal: long-in-time, one-band kernels catch rhythm/onset patterns per band.
        self.temporal = nn.ModuleList(
            nn.Conv2d(1, cfg.temporal_filters, (k, 1)) for k in cfg.temporal_kernels
        )
        self.temporal_bn = nn.ModuleList(
            nn.BatchNorm2d(cfg.temporal_filters, eps=cfg.bn_eps) for _ in cfg.temporal_kernels
        )
        mid_in = [cfg.frontend_channels] + [cfg.midend_filters] * (cfg.midend_layers - 1)
        self.midend = nn.ModuleList(
            nn.Conv1d(c, cfg.midend_filters, cfg.midend_kernel, padding=cfg.midend_kernel // 2)
            for c in mid_in
        )
        self.midend_bn = nn.ModuleList(
            nn.BatchNorm1d(cfg.midend_filters, eps=cfg.bn_eps) for _ in mid_in
        )
        self.pool_bn = nn.BatchNorm1d(2 * cfg.pooled_channels, eps=cfg.bn_eps)
        self.dense = nn.Linear(2 * cfg.pooled_channels, cfg.embed_dim)
        self.dense_bn = nn.BatchNorm1d(cfg.embed_dim, eps=cfg.bn_eps)
        self.logits = nn.Linear(cfg.embed_dim, cfg.n_tags)

    def forward(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Embed and tag a batch of log-mel patches (dropout is absent: inference only)."""
        x = self.input_bn(mel.unsqueeze(1))  # [B, 1, T, M]
        t_pad = self.config.timbral_time // 2
        x_t = F.pad(x, (0, 0, t_pad, t_pad))  # zero-pad time only: [B, 1, T+6, M]
        feats: list[torch.Tensor] = []
        for conv, bn in zip(self.timbral, self.timbral_bn, strict=True):
            y = bn(F.relu(conv(x_t)))  # [B, 204, T, M - h + 1]
            feats.append(y.amax(dim=3))  # max over mel: [B, 204, T]
        for k, conv, bn in zip(
            self.config.temporal_kernels, self.temporal, self.temporal_bn, strict=True
        ):
            before, after = _same_pad(k)
            y = bn(F.relu(conv(F.pad(x, (0, 0, before, after)))))  # [B, 51, T, M]
            feats.append(y.amax(dim=3))  # [B, 51, T]
        front = torch.cat(feats, dim=1)  # [B, 561, T]

        outs = [front]
        h = front
        for i, (conv, bn) in enumerate(zip(self.midend, self.midend_bn, strict=True)):
            y = bn(F.relu(conv(h)))  # [B, 64, T]
            h = y if i == 0 else y + h  # residual from conv2 on
            outs.append(h)
        mid = torch.cat(outs, dim=1)  # [B, 753, T]

        # Interleave (max, mean) per channel, as TF's flatten of [B, C, 2] does.
        pooled = torch.stack([mid.amax(dim=2), mid.mean(dim=2)], dim=2).flatten(1)  # [B, 1506]
        emb = self.dense_bn(F.relu(self.dense(self.pool_bn(pooled))))  # [B, 200]
        return emb, torch.sigmoid(self.logits(emb))  # [B, 200], [B, 50]
