"""Audio to model input, for both callers: the upload agent (through streams/audio.py,
which first resolves and fetches the upload's URI) and the query API's "sounds like this
file" (serving/api/audio_query.py). It is the encoder's front end, so it lives with the
models: decode (mono, resampled, the first ``max_seconds``), log-mel, cut into patches;
pool a track's patch outputs into one vector.

The error contract of every audio step: :class:`AudioRejected` (permanent, the item's
fault) or :class:`AudioUnavailable` (transient, retry later), each with a short ``reason``
that becomes a dead-letter or retry reason. No other exception leaves these functions for
a file-system or decoding failure.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.frontend import load_audio, log_mel, patches
from models.spec import FrontEndSpec

# errno values that say the path itself is unusable, not that the disk is in trouble.
_BAD_PATH_ERRNOS = {errno.ENAMETOOLONG, errno.ELOOP, errno.ENOTDIR, errno.EISDIR, errno.EINVAL}
_MISSING_ERRNOS = {errno.ENOENT}
_DENIED_ERRNOS = {errno.EACCES, errno.EPERM}


class AudioRejected(ValueError):
    """Permanent: the upload's audio cannot be used, retrying will not help."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    def __reduce__(self) -> tuple[type[AudioRejected], tuple[str, str]]:
        return (type(self), (self.reason, self.message))


class AudioUnavailable(OSError):
    """Transient: the audio could not be fetched or read now; retry later."""

    def __init__(self, reason: str, message: str) -> None:
        # OSError's 2-argument form means (errno, strerror): keep one argument.
        super().__init__(message)
        self.reason = reason
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[type[AudioUnavailable], tuple[str, str]]:
        return (type(self), (self.reason, self.message))


def fs_error(exc: OSError | ValueError, what: str) -> AudioRejected | AudioUnavailable:
    """A file-system error as the contract's exception (ValueError: a NUL byte in a path)."""
    if isinstance(exc, ValueError) or exc.errno in _BAD_PATH_ERRNOS:
        return AudioRejected("bad-path", f"unusable path {what}: {exc}")
    if exc.errno in _MISSING_ERRNOS:
        return AudioRejected("missing", f"no such audio file: {what}")
    if exc.errno in _DENIED_ERRNOS:
        return AudioRejected("unreadable", f"cannot read {what}: {exc}")
    # EIO, ESTALE, EMFILE...: the disk or the process, not the item.
    return AudioUnavailable("io-error", f"cannot read {what}: {exc}")


@dataclass(frozen=True)
class AudioInput:
    """Model-ready patches of one track."""

    patches: np.ndarray  # [n, patch_frames, n_mels] float32
    seconds: float  # audio decoded


def _check_file(path: Path) -> None:
    try:
        if "\x00" in str(path):
            raise ValueError("embedded null byte")
        st = path.stat()
    except (OSError, ValueError) as exc:
        raise fs_error(exc, str(path)[:200]) from exc
    if not path.is_file():
        raise AudioRejected("bad-path", f"not a regular file: {path}")
    if st.st_size == 0:
        raise AudioRejected("undecodable", f"{path.name} is empty")


def decode_file(path: Path, *, spec: FrontEndSpec, max_seconds: float) -> AudioInput:
    """Decode a local file to model-ready patches. Blocking: run in an executor."""
    _check_file(path)
    try:
        y = load_audio(path, spec, max_seconds=max_seconds)
    except Exception as exc:  # librosa/soundfile raise many types for bad input
        raise AudioRejected("undecodable", f"cannot decode {path.name}: {exc}") from exc
    if y.size < spec.n_fft:
        raise AudioRejected("too-short", f"{path.name} is too short")
    p = patches(log_mel(y, spec), spec)
    return AudioInput(patches=p, seconds=y.size / spec.sample_rate)


def pool_track(
    emb: np.ndarray, tags: np.ndarray, tag_names: tuple[str, ...], *, top: int = 5
) -> tuple[np.ndarray, tuple[str, ...]]:
    """One track's unit embedding (mean over its patches) and its top tag names."""
    v = emb.mean(axis=0)
    n = float(np.linalg.norm(v))
    v = v / n if n > 0 else v
    probs = tags.mean(axis=0)
    order = np.argsort(-probs)[:top]
    names = tuple(tag_names[i] for i in order if i < len(tag_names))
    return v.astype(np.float32), names
