"""What an audio encoder expects and returns, so encoders can be swapped.

The pipeline only relies on this card: the front end computes log-mel patches
from it, Triton serves ``[B, patch_frames, n_mels] -> embedding [B, embed_dim],
tags [B, n_tags]``, and the track vector is the mean over a track's patches.
MusiCNN (MSD) is the default; the seed paper's 128x640 ResNet fits the same card
with other numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Tensor names of the served models: the one home for the export (models/export*.py), the
# embedded server (infra/triton_server.py) and the clients (serving/*_client.py). The
# Python-backend model (models/triton_user_model.py) runs inside tritonserver without this
# package and repeats the user encoder's names; tests/unit/test_export_user_triton.py
# checks they agree.
ENCODER_INPUT = "mel"  # [B, patch_frames, n_mels] FP32
ENCODER_OUTPUTS = ("embedding", "tags")  # in the order forward() returns them
USER_INPUT = "history"  # [L] BYTES, most recent last
USER_OUTPUTS = ("track_ids", "scores", "version")  # [N] BYTES, [N] FP32, [1] BYTES


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
