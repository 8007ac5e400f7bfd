"""Log-mel front end: audio file -> log-mel -> model patches, driven by ``FrontEndSpec``.

Reproduces ``musicnn.extractor.batch_data`` except for one deliberate fix: musicnn casts the
mel power to float16 before ``log10(10000 x + 1)``, which overflows to inf on loud music
(float16 max is 65504) and collapses the model outputs. We stay in float32 throughout.
"""

from __future__ import annotations

import logging
from pathlib import Path

import librosa
import numpy as np

from models.spec import FrontEndSpec

log = logging.getLogger(__name__)


def load_audio(
    path: str | Path, spec: FrontEndSpec, max_seconds: float | None = None
) -> np.ndarray:
    """Decode ``path`` to mono float32 at ``spec.sample_rate`` (first ``max_seconds`` only)."""
    # Same call as musicnn (librosa's default resampler), so spectrograms match its own.
    y, _ = librosa.load(str(path), sr=spec.sample_rate, mono=True, duration=max_seconds)
    return np.ascontiguousarray(y, dtype=np.float32)


def log_mel(y: np.ndarray, spec: FrontEndSpec) -> np.ndarray:
    """Mono waveform -> log-compressed mel power spectrogram [frames, n_mels] float32."""
    power = librosa.feature.melspectrogram(
        y=np.asarray(y, dtype=np.float32),
        sr=spec.sample_rate,
        hop_length=spec.hop_length,
        n_fft=spec.n_fft,
        n_mels=spec.n_mels,
    ).T  # [frames, n_mels]
    power = power.astype(np.float32, copy=False)
    return np.log10(np.float32(spec.log_scale) * power + np.float32(1.0)).astype(np.float32)


def n_frames(n_samples: int, spec: FrontEndSpec) -> int:
    """STFT frames librosa yields for ``n_samples`` (centered frames: 1 + n // hop)."""
    return 1 + n_samples // spec.hop_length


def patches(logmel: np.ndarray, spec: FrontEndSpec) -> np.ndarray:
    """Split [frames, n_mels] into non-overlapping [n, patch_frames, n_mels] patches.

    Like musicnn's default (no overlap), a trailing partial patch is dropped. A clip shorter
    than one patch is repeat-padded to one patch, as MusiCNN was trained ("repeat-pad"), so
    short previews still get an embedding instead of an empty batch.
    """
    if logmel.ndim != 2 or logmel.shape[1] != spec.n_mels:
        raise ValueError(f"expected [frames, {spec.n_mels}] log-mel, got {logmel.shape}")
    frames = logmel.shape[0]
    if frames == 0:
        raise ValueError("empty spectrogram: no audio")
    p = spec.patch_frames
    if frames < p:
        reps = -(-p // frames)  # ceil division
        logmel = np.tile(logmel, (reps, 1))[:p]
        log.debug("repeat-padded %d frames to one %d-frame patch", frames, p)
        frames = p
    n = frames // p
    return np.ascontiguousarray(logmel[: n * p].reshape(n, p, spec.n_mels), dtype=np.float32)
