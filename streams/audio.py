"""Upload audio: check where an ``audio_uri`` points, fetch it, turn it into model input."""

from __future__ import annotations

import logging
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np

from models.frontend import load_audio, log_mel, patches
from models.spec import FrontEndSpec

log = logging.getLogger(__name__)

MAX_DOWNLOAD_BYTES = 64 * 1024 * 1024


class AudioRejected(ValueError):
    """The upload's audio cannot be used (not allowed, missing, undecodable)."""


def resolve_audio_uri(uri: str, *, roots: list[Path], hosts: list[str]) -> str:
    """The local path or URL to read, if ``uri`` is allowed; raises AudioRejected otherwise.

    file:// must resolve (symlinks and ``..`` included) inside one of ``roots``;
    http(s):// must name one of ``hosts`` exactly. Anything else is refused so a
    producer cannot make a worker read arbitrary files or call arbitrary hosts.
    """
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise AudioRejected(f"file URI with a remote host: {uri}")
        path = Path(unquote(parsed.path)).resolve()
        for root in roots:
            if path.is_relative_to(root.resolve()):
                return str(path)
        raise AudioRejected(f"{path} is outside the allowed audio roots")
    if parsed.scheme in ("http", "https"):
        if parsed.hostname and parsed.hostname in hosts:
            return uri
        raise AudioRejected(f"host {parsed.hostname!r} is not an allowed audio host")
    raise AudioRejected(f"unsupported audio URI scheme {parsed.scheme!r}")


def _download(url: str, *, timeout_s: float) -> Path:
    with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 (host allow-listed)
        data = resp.read(MAX_DOWNLOAD_BYTES + 1)
    if len(data) > MAX_DOWNLOAD_BYTES:
        raise AudioRejected(f"{url} is larger than {MAX_DOWNLOAD_BYTES} bytes")
    suffix = Path(urlparse(url).path).suffix or ".audio"
    with tempfile.NamedTemporaryFile(suffix=suffix, delete=False) as f:
        f.write(data)
        return Path(f.name)


@dataclass(frozen=True)
class AudioInput:
    """Model-ready patches of one track."""

    patches: np.ndarray  # [n, patch_frames, n_mels] float32
    seconds: float  # audio decoded


def prepare_audio(
    location: str, *, spec: FrontEndSpec, max_seconds: float, timeout_s: float
) -> AudioInput:
    """Decode (mono, resampled), log-mel, cut into patches. Blocking: run in an executor."""
    downloaded: Path | None = None
    try:
        if location.startswith(("http://", "https://")):
            downloaded = _download(location, timeout_s=timeout_s)
            path = downloaded
        else:
            path = Path(location)
        if not path.is_file():
            raise AudioRejected(f"no such audio file: {path}")
        try:
            y = load_audio(path, spec, max_seconds=max_seconds)
        except Exception as exc:  # librosa/soundfile raise many types for bad input
            raise AudioRejected(f"cannot decode {path.name}: {exc}") from exc
        if y.size < spec.n_fft:
            raise AudioRejected(f"{path.name} is too short")
        p = patches(log_mel(y, spec), spec)
        return AudioInput(patches=p, seconds=y.size / spec.sample_rate)
    finally:
        if downloaded is not None:
            downloaded.unlink(missing_ok=True)


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
