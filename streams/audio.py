"""Upload audio, for the upload agent only: check where an ``audio_uri`` points, fetch it
(``streams.fetch``) and decode it with the encoder's front end (``models.audio_input``).

Errors follow the contract of ``models.audio_input``: :class:`AudioRejected` (permanent, the
item's fault) or :class:`AudioUnavailable` (transient, retry later), each with a short
``reason``; no other exception leaves :func:`resolve_audio_uri` or :func:`prepare_audio`
for a file-system or network failure.
"""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import unquote, urlparse

from models.audio_input import (
    AudioInput,
    AudioRejected,
    AudioUnavailable,
    decode_file,
    fs_error,
    pool_track,
)
from models.spec import FrontEndSpec
from schemas.settings import Settings
from serving.redact import redact_url
from streams.fetch import (
    DEFAULT_MAX_BYTES,
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
            raise fs_error(exc, repr(raw[:200])) from exc
        for root in policy.roots:
            if path.is_relative_to(root.resolve()):
                return str(path)
        raise AudioRejected("not-allowed", f"{path} is outside the allowed audio roots")
    if parsed.scheme in ("http", "https"):
        check_url(uri, policy)
        return uri
    raise AudioRejected("not-allowed", f"unsupported audio URI scheme {parsed.scheme!r}")


def prepare_audio(
    location: str, *, spec: FrontEndSpec, max_seconds: float, policy: FetchPolicy | None = None
) -> AudioInput:
    """Fetch (an http(s) URL, under ``policy``; without one no host is allowed) or open (a
    local path), then decode to patches (``models.audio_input.decode_file``). Blocking: run
    in an executor. Raises only AudioRejected or AudioUnavailable for bad input and
    file-system or network failures.
    """
    downloaded: Path | None = None
    try:
        if location.startswith(("http://", "https://")):
            downloaded = download(location, policy=policy or FetchPolicy())
            path = downloaded
        else:
            path = Path(location)
        return decode_file(path, spec=spec, max_seconds=max_seconds)
    finally:
        if downloaded is not None:
            downloaded.unlink(missing_ok=True)
