"""Fetching upload audio safely: which URIs are allowed, and an HTTP GET that cannot be
steered, stalled or flooded by the host it talks to.

The error contract (the upload agent dispatches on it, see ``streams/ingest.py``):

* :class:`AudioRejected` (a ``ValueError``): permanent, the item's own fault -- a URI that
  is not allowed, a bad or missing path, an HTTP 4xx other than 408/429, a body over the
  size cap, a redirect to a place that is not allowed. Retrying cannot help.
* :class:`AudioUnavailable` (an ``OSError``): transient -- connection refused or reset, a
  DNS failure, a timeout, the total deadline, HTTP 5xx/408/429, a malformed or cut reply,
  a local I/O error. Worth retrying later.

Every file-system and network error is turned into one of the two, each with a short
machine ``reason`` (``"not-allowed"``, ``"http-404"``, ``"deadline"``...) for counting.

Rules for http(s):

* Allow-list entries are ``host:port``; a bare ``host`` allows its scheme's default port
  only, so allowing ``cdn.example.com`` does not open ``cdn.example.com:9090``.
* A deny list of the stack's own endpoints (Kafka, Triton, Milvus, metrics, the API) wins
  over the allow-list, both by name and by resolved address; a denied loopback or wildcard
  address denies that port on every loopback address, since a service bound to the
  wildcard answers on all of them.
* The host is resolved once, checked, and the connection goes to exactly the checked
  addresses (no second lookup a DNS-rebinding host could answer differently).
* Redirects are followed, at most ``max_redirects`` hops, and every hop goes through the
  same allow/deny/resolve checks as the first request. Not following them at all would be
  simpler, but CDNs and object stores commonly answer with a redirect to a signed URL; a
  hop that is checked like a first request grants nothing a direct upload could not, and
  a refused hop is rejected with reason ``"redirect"``.
* One deadline bounds the whole download (every hop, headers and body): a watchdog shuts
  the socket down when it passes, because a socket timeout only bounds one read and a
  host dripping a byte a second would never trip it.
* The size cap is checked against Content-Length up front and enforced while streaming,
  so an unannounced flood is cut at the cap, not after it has been read.
"""

from __future__ import annotations

import errno
import http.client
import ipaddress
import logging
import socket
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, NamedTuple
from urllib.parse import unquote, urljoin, urlsplit

from models.audio_input import AudioRejected, AudioUnavailable
from serving.redact import redact_url

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
_CHUNK = 64 * 1024
_DEFAULT_PORTS = {"http": 80, "https": 443}
_REDIRECTS = {301, 302, 303, 307, 308}
# 408 (request timeout) and 429 (too many requests) are the server's state, not the item's.
_TRANSIENT_4XX = {408, 429}


@dataclass(frozen=True)
class FetchPolicy:
    """Where upload audio may come from, and the limits of one fetch."""

    roots: tuple[Path, ...] = ()
    hosts: tuple[str, ...] = ()  # "host[:port]"; bare = the scheme's default port
    denied: tuple[str, ...] = ()  # "host:port" never fetched from, even if allowed
    timeout_s: float = 10.0  # one connect or read
    deadline_s: float = 20.0  # the whole download, redirects included
    max_bytes: int = DEFAULT_MAX_BYTES
    max_redirects: int = 3


class Endpoint(NamedTuple):
    host: str  # lower case, IPv6 without brackets
    port: int | None  # None: the scheme's default port

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}" if self.port else host


def parse_endpoint(text: str) -> Endpoint:
    """``host``, ``host:port``, ``[v6]:port`` or a URL -> Endpoint; ValueError if malformed."""
    s = text.strip()
    parts = urlsplit(s if "://" in s else f"//{s}")
    host = (parts.hostname or "").lower()
    if not host:
        raise ValueError(f"no host in endpoint {text!r}")
    return Endpoint(host, parts.port)  # .port raises ValueError when out of range


def endpoints_from(value: str) -> list[Endpoint]:
    """Endpoints of a setting that may hold ``host:port[,host:port]`` or a URL ("" = none)."""
    out = []
    for item in value.split(","):
        if item.strip():
            try:
                out.append(parse_endpoint(item))
            except ValueError:
                log.warning("ignoring malformed endpoint %r", item)
    return out


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _local_any(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return ip.is_loopback or ip.is_unspecified


@dataclass(frozen=True)
class _Target:
    url: str
    scheme: str
    host: str
    port: int
    path: str  # path + query, as sent


def check_url(url: str, policy: FetchPolicy, *, redirect: bool = False) -> _Target:
    """The parsed http(s) URL if its ``host:port`` is allowed and not denied (by name).

    A refusal is counted as ``"not-allowed"`` or ``"denied"`` (one of the stack's own
    endpoints), or as ``"redirect"`` when ``url`` is where a redirect pointed.
    """
    reason = "redirect" if redirect else "not-allowed"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise AudioRejected("bad-uri", f"malformed URL {redact_url(url)!r}: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise AudioRejected(reason, f"unsupported URL scheme {parts.scheme!r}")
    host = (parts.hostname or "").lower()
    if not host or "\x00" in url or any(c in url for c in "\r\n"):
        raise AudioRejected("bad-uri", f"malformed URL {redact_url(url)!r}")
    port = port or _DEFAULT_PORTS[scheme]
    allowed = False
    for entry in policy.hosts:
        try:
            e = parse_endpoint(entry)
        except ValueError:
            continue
        if e.host == host and (e.port or _DEFAULT_PORTS[scheme]) == port:
            allowed = True
            break
    if not allowed:
        raise AudioRejected(reason, f"{host}:{port} is not an allowed audio host")
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    target = _Target(url=url, scheme=scheme, host=host, port=port, path=path)
    if _denied_by_name(target, policy):
        raise AudioRejected(
            "redirect" if redirect else "denied",
            f"{host}:{port} is one of the stack's own services",
        )
    return target


def _denied_by_name(t: _Target, policy: FetchPolicy) -> bool:
    for entry in policy.denied:
        try:
            e = parse_endpoint(entry)
        except ValueError:
            continue
        if e.port == t.port and e.host == t.host:
            return True
    return False


def _denied_addresses(policy: FetchPolicy) -> tuple[set[tuple[str, int]], set[int]]:
    """(ip, port) pairs of the deny list, and ports denied on every loopback address."""
    exact: set[tuple[str, int]] = set()
    any_local: set[int] = set()
    for entry in policy.denied:
        try:
            e = parse_endpoint(entry)
        except ValueError:
            continue
        if e.port is None:
            continue
        ips = [e.host] if _ip(e.host) else []
        if not ips:
            try:
                ips = [str(a[4][0]) for a in socket.getaddrinfo(e.host, e.port)]
            except (OSError, UnicodeError):
                ips = []  # a denied name that does not resolve cannot be reached either
        for raw in ips:
            ip = _ip(raw)
            if ip is None:
                continue
            exact.add((str(ip), e.port))
            if _local_any(ip):
                any_local.add(e.port)
    return exact, any_local


Address = tuple[socket.AddressFamily, Any]  # (family, sockaddr as getaddrinfo gives it)


def resolve_checked(t: _Target, policy: FetchPolicy, *, reason: str) -> list[Address]:
    """The addresses to connect to; refuses when any of them is a denied endpoint."""
    try:
        infos = socket.getaddrinfo(t.host, t.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise AudioUnavailable("dns", f"cannot resolve {t.host}: {exc}") from exc
    except (OSError, UnicodeError) as exc:
        raise AudioRejected("bad-uri", f"cannot resolve {t.host!r}: {exc}") from exc
    exact, any_local = _denied_addresses(policy)
    out: list[Address] = []
    for family, _, _, _, sockaddr in infos:
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
        if (str(ip), t.port) in exact or (_local_any(ip) and t.port in any_local):
            raise AudioRejected(
                reason, f"{t.host}:{t.port} resolves to {ip}, one of the stack's own services"
            )
        out.append((family, sockaddr))
    return out


def _connect_any(addrs: list[Address], timeout: float) -> socket.socket:
    last: OSError = OSError(errno.EHOSTUNREACH, "no address")
    for family, sockaddr in addrs:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            sock.close()
            last = exc
    raise last


class _PinnedHTTP(http.client.HTTPConnection):
    """Connects to the already-checked addresses, never to a second lookup of the name."""

    def __init__(self, host: str, port: int, *, addrs: list[Address], timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._addrs = addrs

    watch_sock: socket.socket | None = None  # outlives self.sock (see _Watchdog)

    def connect(self) -> None:
        self.sock = self.watch_sock = _connect_any(self._addrs, self.timeout or 10.0)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, *, addrs: list[Address], timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._addrs = addrs
        self._tls = ssl.create_default_context()

    watch_sock: socket.socket | None = None

    def connect(self) -> None:
        raw = _connect_any(self._addrs, self.timeout or 10.0)
        self.watch_sock = raw  # the watchdog can cut a slow handshake too
        self.sock = self.watch_sock = self._tls.wrap_socket(raw, server_hostname=self.host)


class _Watchdog:
    """Shuts a connection's socket down when the deadline passes (unblocks any read)."""

    def __init__(self, conn: _PinnedHTTP | _PinnedHTTPS, remaining_s: float) -> None:
        self.fired = False
        self._conn = conn
        self._timer = threading.Timer(max(0.0, remaining_s), self._fire)
        self._timer.daemon = True

    def _fire(self) -> None:
        self.fired = True
        # Not conn.sock: http.client drops it once a "Connection: close" response is
        # handed over, while the response keeps reading from the same file descriptor.
        sock = self._conn.watch_sock
        if sock is not None:
            try:
                # The plain socket method: SSLSocket.shutdown would also drop its TLS
                # object under the reading thread's feet.
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass  # already closed

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()


def _status_error(status: int, url: str) -> AudioRejected | AudioUnavailable:
    msg = f"HTTP {status} from {redact_url(url)}"
    if status >= 500 or status in _TRANSIENT_4XX:
        return AudioUnavailable(f"http-{status}", msg)
    return AudioRejected(f"http-{status}", msg)


def network_error(exc: BaseException, what: str) -> AudioUnavailable:
    """The transient error a network or protocol failure stands for."""
    if isinstance(exc, TimeoutError | socket.timeout):
        reason = "timeout"
    elif isinstance(exc, ConnectionRefusedError):
        reason = "refused"
    elif isinstance(exc, http.client.IncompleteRead | http.client.RemoteDisconnected):
        reason = "incomplete"
    elif isinstance(exc, ConnectionError):
        reason = "reset"
    elif isinstance(exc, ssl.SSLError | ssl.CertificateError):
        reason = "tls"
    elif isinstance(exc, http.client.HTTPException):
        reason = "bad-reply"
    elif isinstance(exc, ValueError):  # e.g. an unparsable chunk size
        reason = "bad-reply"
    else:
        reason = "network"
    return AudioUnavailable(reason, f"{what}: {type(exc).__name__}: {exc}")


def _get_once(
    t: _Target, sink: IO[bytes], *, policy: FetchPolicy, deadline: float, reason: str
) -> str | None:
    """GET one hop into ``sink``: None when the body was written, else the redirect URL."""
    addrs = resolve_checked(t, policy, reason=reason)
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise AudioUnavailable("deadline", f"{policy.deadline_s} s deadline passed")
    timeout = min(policy.timeout_s, remaining)
    cls = _PinnedHTTPS if t.scheme == "https" else _PinnedHTTP
    conn = cls(t.host, t.port, addrs=addrs, timeout=timeout)
    try:
        with _Watchdog(conn, remaining) as dog:
            try:
                conn.request(
                    "GET",
                    t.path,
                    headers={
                        "Accept-Encoding": "identity",
                        "Connection": "close",
                        "User-Agent": "resonate-ingest",
                    },
                )
                resp = conn.getresponse()
                if resp.status in _REDIRECTS:
                    location = resp.getheader("Location")
                    if not location:
                        raise AudioRejected(
                            f"http-{resp.status}",
                            f"redirect without Location from {redact_url(t.url)}",
                        )
                    return urljoin(t.url, location)
                if resp.status != 200:
                    raise _status_error(resp.status, t.url)
                _stream_body(resp, sink, t=t, policy=policy)
            except (AudioRejected, AudioUnavailable):
                if dog.fired:
                    raise _deadline(policy, t) from None
                raise
            except (OSError, http.client.HTTPException, ValueError) as exc:
                if dog.fired or time.monotonic() >= deadline:
                    raise _deadline(policy, t) from exc
                raise network_error(exc, f"fetching {redact_url(t.url)}") from exc
            if dog.fired:  # a body "ended" by the watchdog's shutdown is cut, not complete
                raise _deadline(policy, t)
            return None
    finally:
        conn.close()


def _deadline(policy: FetchPolicy, t: _Target) -> AudioUnavailable:
    return AudioUnavailable(
        "deadline", f"{redact_url(t.url)} not downloaded within the {policy.deadline_s} s deadline"
    )


def _stream_body(
    resp: http.client.HTTPResponse, sink: IO[bytes], *, t: _Target, policy: FetchPolicy
) -> None:
    declared_text = resp.getheader("Content-Length")
    declared = int(declared_text) if declared_text and declared_text.isdigit() else None
    if declared is not None and declared > policy.max_bytes:
        raise AudioRejected(
            "too-large", f"{redact_url(t.url)} is {declared} bytes (cap {policy.max_bytes})"
        )
    total = 0
    # read1: at most one socket read per call, so the cap is checked as bytes arrive.
    while chunk := resp.read1(_CHUNK):
        total += len(chunk)
        if total > policy.max_bytes:
            raise AudioRejected(
                "too-large", f"{redact_url(t.url)} is over the {policy.max_bytes} byte cap"
            )
        try:
            sink.write(chunk)
        except OSError as exc:
            raise AudioUnavailable("io-error", f"cannot store the download: {exc}") from exc
    if declared is not None and total < declared:
        raise AudioUnavailable(
            "incomplete", f"{redact_url(t.url)}: {total} of {declared} bytes, then EOF"
        )


def download(url: str, *, policy: FetchPolicy) -> Path:
    """Fetch ``url`` into a temporary file (the caller deletes it); see the module rules."""
    deadline = time.monotonic() + policy.deadline_s
    try:
        suffix = Path(unquote(urlsplit(url).path)).suffix[:10] or ".audio"
        if not suffix.isascii() or "\x00" in suffix:
            suffix = ".audio"
        out = tempfile.NamedTemporaryFile(prefix="resonate-", suffix=suffix, delete=False)
    except (OSError, ValueError) as exc:
        raise AudioUnavailable("io-error", f"cannot create a temporary file: {exc}") from exc
    path = Path(out.name)
    try:
        with out:
            current, redirect = url, False
            for _ in range(policy.max_redirects + 1):
                target = check_url(current, policy, redirect=redirect)
                reason = "redirect" if redirect else "denied"
                nxt = _get_once(target, out, policy=policy, deadline=deadline, reason=reason)
                if nxt is None:
                    return path
                log.info("audio %s redirects to %s", redact_url(current), redact_url(nxt))
                current, redirect = nxt, True
            raise AudioRejected(
                "redirect", f"{redact_url(url)}: more than {policy.max_redirects} redirects"
            )
    except BaseException:
        path.unlink(missing_ok=True)
        raise
