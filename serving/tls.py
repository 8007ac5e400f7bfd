"""Client TLS contexts and the ``https://`` convention for Triton, shared by every client.

One function builds every client-side ``ssl.SSLContext`` (Kafka, Triton) so the rules are
the same everywhere: TLS 1.2 or newer, the server's certificate and host name verified
against ``cafile`` (or the system's trusted CAs). Turning verification off is possible for
Triton only (``triton_ssl_verify``), for a lab's self-signed certificate.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any


def tls_context(
    *,
    cafile: Path | None,
    certfile: Path | None = None,
    keyfile: Path | None = None,
    verify: bool = True,
) -> ssl.SSLContext:
    """A client TLS context that verifies the server (``cafile`` or the system CAs)."""
    ctx = ssl.create_default_context(
        purpose=ssl.Purpose.SERVER_AUTH, cafile=str(cafile) if cafile else None
    )
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if not verify:
        ctx.check_hostname = False  # must precede CERT_NONE
        ctx.verify_mode = ssl.CERT_NONE
    if certfile is not None:
        ctx.load_cert_chain(certfile=str(certfile), keyfile=str(keyfile) if keyfile else None)
    return ctx


def split_triton_url(url: str) -> tuple[str, bool]:
    """``(host:port, tls)`` of a Triton URL: ``https://`` means TLS, ``http://`` or none not.

    tritonclient wants the address without a scheme and a separate ``ssl`` flag.
    """
    if url.startswith("https://"):
        return url.removeprefix("https://").rstrip("/"), True
    return url.removeprefix("http://").rstrip("/"), False


def triton_sync_tls(url: str, *, cafile: Path | None, verify: bool) -> dict[str, Any]:
    """TLS keyword arguments of ``tritonclient.http.InferenceServerClient`` (geventhttpclient).

    Empty for plain HTTP. geventhttpclient calls the factory with ``cafile=``; ours returns
    the same verified context the async clients use.
    """
    _, tls = split_triton_url(url)
    if not tls:
        return {}

    def factory(cafile: str | None = None) -> ssl.SSLContext:
        return tls_context(cafile=Path(cafile) if cafile else None, verify=verify)

    options: dict[str, Any] = {"ca_certs": str(cafile)} if cafile else {}
    return {
        "ssl": True,
        "ssl_options": options,
        "ssl_context_factory": factory,
        "insecure": not verify,
    }
