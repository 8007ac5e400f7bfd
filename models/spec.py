"""What an audio encoder expects and returns, so encoders can be swapped.

The pipeline only relies on this card: the front end computes log-mel patches
from it, Triton serves ``[B, patch_frames, n_mels] -> embedding [B, embed_dim],
tags [B, n_tags]``, and the track vector is the mean over a track's patches.
MusiCNN (MSD) is the default; the seed paper's 128x640 ResNet fits the same card
with other numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FrontEndSpec:
    """Log-mel front end parameters; defaults are MusiCNN's (MSD_musicnn)."""

    sample_rate: int = 16_000  # Hz the audio is resampled to
    n_fft: int = 512  # STFT window, samples
    hop_length: int = 256  # STFT hop, samples
    n_mels: int = 96  # mel bands
    patch_frames: int = 187  # frames per model input patch (~3 s)
    log_scale: float = 10_000.0  # compression: log10(log_scale * power + 1)


@dataclass(frozen=True)
class EncoderCard:
    """Name, front end and output sizes of one servable audio encoder."""

    name: str = "musicnn"  # Triton model name
    version: str = "msd_musicnn-1"  # stamped into Milvus rows
    frontend: FrontEndSpec = field(default_factory=FrontEndSpec)
    embed_dim: int = 200  # penultimate layer width
    tag_names: tuple[str, ...] = ()  # one name per tag probability output
