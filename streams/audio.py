"""Upload audio: check where an ``audio_uri`` points, fetch it, turn it into model input.

Errors follow the contract of ``streams.fetch``: :class:`AudioRejected` (permanent, the
item's fault) or :class:`AudioUnavailable` (transient, retry later), each with a short
``reason``; no other exception leaves :func:`resolve_audio_uri` or :func:`prepare_audio`
for a file-system or network failure.
"""

from __future__ import annotations

import errno
import logging
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np

from models.frontend import load_audio, log_mel, patches
from models.spec import FrontEndSpec
from schemas.settings import Settings
from serving.redact import redact_url
from streams.fetch import (
    DEFAULT_MAX_BYTES,
    AudioRejected,
    AudioUnavailable,
    FetchPolicy,
    check_url,
    download,
    endpoints_from,
)

__all__ = [
    "DEFAULT_MAX_BYTES",
    "AudioInput",
    "AudioRejected",
    "AudioUnavailable",
    "FetchPolicy",
    "policy_from_settings",
    "pool_track",
    "prepare_audio",
    "resolve_audio_uri",
]

log = logging.getLogger(__name__)

# errno values that say the path itself is unusable, not that the disk is in trouble.
_BAD_PATH_ERRNOS = {errno.ENAMETOOLONG, errno.ELOOP, errno.ENOTDIR, errno.EISDIR, errno.EINVAL}
_MISSING_ERRNOS = {errno.ENOENT}
_DENIED_ERRNOS = {errno.EACCES, errno.EPERM}


def policy_from_settings(s: Settings) -> FetchPolicy:
    """The fetch rules of a deployment: its roots, hosts, limits, and its own endpoints.

    Besides ``audio_denied_endpoints`` (the embedded stack fills it with every port it
    opens), the addresses the settings name for Kafka, Triton, Milvus, the worker metrics
    and the API are denied too, so a production deployment is covered without listing them.
    """
    own = [
        *endpoints_from(s.kafka_bootstrap),
        *endpoints_from(s.triton_url),
        *endpoints_from(s.milvus_uri),
    ]
    denied = [str(e) for e in own if e.port]
    for port in (s.metrics_port, s.api_port):
        if port:
            denied.append(f"{s.host}:{port}")
    return FetchPolicy(
        roots=tuple(s.audio_roots),
        hosts=tuple(s.audio_hosts),
        denied=(*s.audio_denied_endpoints, *denied),
        timeout_s=min(s.timeout_s, s.audio_fetch_deadline_s),
        deadline_s=s.audio_fetch_deadline_s,
        max_bytes=s.audio_max_bytes,
        max_redirects=s.audio_max_redirects,
    )


def _fs_error(exc: OSError | ValueError, what: str) -> AudioRejected | AudioUnavailable:
    """A file-system error as the contract's exception (ValueError: a NUL byte in a path)."""
    if isinstance(exc, ValueError) or exc.errno in _BAD_PATH_ERRNOS:
        return AudioRejected("bad-path", f"unusable path {what}: {exc}")
    if exc.errno in _MISSING_ERRNOS:
        return AudioRejected("missing", f"no such audio file: {what}")
    if exc.errno in _DENIED_ERRNOS:
        return AudioRejected("unreadable", f"cannot read {what}: {exc}")
    # EIO, ESTALE, EMFILE...: the disk or the process, not the item.
    return AudioUnavailable("io-error", f"cannot read {what}: {exc}")


def resolve_audio_uri(uri: str, *, policy: FetchPolicy) -> str:
    """The local path or URL to read, if ``uri`` is allowed; AudioRejected otherwise.

    file:// must resolve (symlinks and ``..`` included) inside one of ``policy.roots``;
    http(s):// must name an allowed ``host:port`` that is not one of the stack's own
    (resolution and redirects are checked again while fetching). Anything else is refused
    so a producer cannot make a worker read arbitrary files or call arbitrary hosts.
    """
    try:
        parsed = urlparse(uri)
    except ValueError as exc:
        raise AudioRejected("bad-uri", f"malformed URI {redact_url(uri)!r}: {exc}") from exc
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise AudioRejected("not-allowed", f"file URI with a remote host: {redact_url(uri)}")
        raw = unquote(parsed.path)
        try:
            if "\x00" in raw:
                raise ValueError("embedded null byte")
            path = Path(raw).resolve()
        except (OSError, ValueError, RuntimeError) as exc:  # RuntimeError: a symlink loop
            if isinstance(exc, RuntimeError):
                raise AudioRejected("bad-path", f"unusable path {raw!r}: {exc}") from exc
            raise _fs_error(exc, repr(raw[:200])) from exc
        for root in policy.roots:
            if path.is_relative_to(root.resolve()):
                return str(path)
        raise AudioRejected("not-allowed", f"{path} is outside the allowed audio roots")
    if parsed.scheme in ("http", "https"):
        check_url(uri, policy)
        return uri
    raise AudioRejected("not-allowed", f"unsupported audio URI scheme {parsed.scheme!r}")


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
        raise _fs_error(exc, str(path)[:200]) from exc
    if not path.is_file():
        raise AudioRejected("bad-path", f"not a regular file: {path}")
    if st.st_size == 0:
        raise AudioRejected("undecodable", f"{path.name} is empty")


def prepare_audio(
    location: str, *, spec: FrontEndSpec, max_seconds: float, policy: FetchPolicy | None = None
) -> AudioInput:
    """Decode (mono, resampled), log-mel, cut into patches. Blocking: run in an executor.

    ``location`` is a local path or an http(s) URL (fetched under ``policy``; without a
    policy no host is allowed). Raises only AudioRejected or AudioUnavailable for bad input
    and file-system or network failures.
    """
    downloaded: Path | None = None
    try:
        if location.startswith(("http://", "https://")):
            downloaded = download(location, policy=policy or FetchPolicy())
            path = downloaded
        else:
            path = Path(location)
        _check_file(path)
        try:
            y = load_audio(path, spec, max_seconds=max_seconds)
        except Exception as exc:  # librosa/soundfile raise many types for bad input
            raise AudioRejected("undecodable", f"cannot decode {path.name}: {exc}") from exc
        if y.size < spec.n_fft:
            raise AudioRejected("too-short", f"{path.name} is too short")
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
