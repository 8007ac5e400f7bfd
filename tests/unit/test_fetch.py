"""Safe fetching of upload audio (streams/fetch.py, streams/audio.py): the error contract,
host:port allow-list, deny list, redirects, the total deadline and the streamed size cap,
against real local servers (an http.server and a raw socket) on 127.0.0.1."""

from __future__ import annotations

import http.server
import io
import pickle
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from models.spec import FrontEndSpec
from schemas.settings import Settings
from streams import fetch
from streams.audio import (
    AudioRejected,
    AudioUnavailable,
    FetchPolicy,
    policy_from_settings,
    prepare_audio,
    resolve_audio_uri,
)

SPEC = FrontEndSpec()


def _wav_bytes() -> bytes:
    t = np.arange(SPEC.sample_rate, dtype=np.float32) / SPEC.sample_rate
    buf = io.BytesIO()
    sf.write(buf, 0.3 * np.sin(2 * np.pi * 440 * t), SPEC.sample_rate, format="WAV")
    return buf.getvalue()


WAV = _wav_bytes()


class _Handler(http.server.BaseHTTPRequestHandler):
    """Routes by path; ``server.stop`` releases handlers that hold their connection."""

    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (stdlib name)
        pass  # keep pytest output clean

    def _send(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 (stdlib name)
        path, stop = self.path.split("?", 1)[0], self.server.stop  # query: a signed URL
        if path == "/ok.wav":
            self._send(200, {"Content-Length": str(len(WAV))}, WAV)
        elif path.startswith("/to/"):  # /to/<url-or-path>: a redirect there
            self._send(302, {"Location": path[len("/to/") :], "Content-Length": "0"})
        elif path == "/loop":
            self._send(302, {"Location": "/loop", "Content-Length": "0"})
        elif path.startswith("/status/"):
            self._send(int(path.rsplit("/", 1)[1]), {"Content-Length": "0"})
        elif path == "/drip":  # one byte every 0.2 s: each read is quick, the whole is not
            self._send(200, {"Content-Length": "50"})
            for _ in range(50):
                if stop.wait(0.2):
                    return
                try:
                    self.wfile.write(b"x")
                    self.wfile.flush()
                except OSError:
                    return
        elif path == "/flood":  # no length; more than the cap, then hold the connection
            self._send(200, {}, b"y" * 5000)
            self.wfile.flush()
            stop.wait(30)
        elif path == "/declared-huge":
            self._send(200, {"Content-Length": str(10**12)})
        elif path == "/short":
            self._send(200, {"Content-Length": "1000"}, b"z" * 10)
        elif path == "/silent":
            stop.wait(30)
        else:
            self._send(404, {"Content-Length": "0"})


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    stop: threading.Event


@dataclass(frozen=True)
class Servers:
    port: int  # the allowed test server
    other: int  # a second server that is not allowed
    garbage: int  # a raw socket server that answers non-HTTP
    policy: FetchPolicy

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def _http_server() -> _Server:
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.stop = threading.Event()
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def _garbage_server(stop: threading.Event) -> socket.socket:
    lsock = socket.create_server(("127.0.0.1", 0))
    lsock.settimeout(0.2)

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = lsock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    conn.recv(4096)
                    conn.sendall(b"NOT-HTTP garbage\r\n\x00\x01\r\n\r\n")
                except OSError:
                    pass

    threading.Thread(target=serve, daemon=True).start()
    return lsock


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    main, other = _http_server(), _http_server()
    stop = threading.Event()
    garbage = _garbage_server(stop)
    port, oport, gport = main.server_address[1], other.server_address[1], garbage.getsockname()[1]
    policy = FetchPolicy(
        hosts=(f"127.0.0.1:{port}", f"127.0.0.1:{gport}"),
        timeout_s=5.0,
        deadline_s=5.0,
        max_bytes=1024 * 1024,
    )
    yield Servers(port=int(port), other=int(oport), garbage=int(gport), policy=policy)
    stop.set()
    for srv in (main, other):
        srv.stop.set()
        srv.shutdown()
        srv.server_close()
    garbage.close()


def _fails(
    url: str, policy: FetchPolicy, kind: type[Exception], reason: str
) -> AudioRejected | AudioUnavailable:
    with pytest.raises((AudioRejected, AudioUnavailable)) as info:
        prepare_audio(url, spec=SPEC, max_seconds=5, policy=policy)
    exc = info.value
    assert isinstance(exc, kind), (type(exc), exc)
    assert exc.reason == reason, (exc.reason, str(exc))
    return exc


def test_an_allowed_wav_is_fetched_and_decoded(servers: Servers) -> None:
    a = prepare_audio(servers.url("/ok.wav"), spec=SPEC, max_seconds=5, policy=servers.policy)
    assert a.patches.ndim == 3 and a.seconds == pytest.approx(1.0, abs=0.01)


def test_a_redirect_is_followed_only_to_allowed_places(servers: Servers) -> None:
    p = servers.policy
    a = prepare_audio(servers.url("/to//ok.wav"), spec=SPEC, max_seconds=5, policy=p)
    assert a.patches.shape[0] >= 1
    _fails(
        servers.url(f"/to/http://127.0.0.1:{servers.other}/ok.wav"), p, AudioRejected, "redirect"
    )
    _fails(servers.url("/to/file:///etc/passwd"), p, AudioRejected, "redirect")
    _fails(servers.url("/loop"), p, AudioRejected, "redirect")
    # Allowed but one of the stack's own endpoints: a redirect there is refused too.
    own = replace(
        p, hosts=(*p.hosts, f"127.0.0.1:{servers.other}"), denied=(f"127.0.0.1:{servers.other}",)
    )
    _fails(
        servers.url(f"/to/http://127.0.0.1:{servers.other}/ok.wav"), own, AudioRejected, "redirect"
    )
    no_hops = replace(p, max_redirects=0)
    _fails(servers.url("/to//ok.wav"), no_hops, AudioRejected, "redirect")


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (404, AudioRejected),
        (403, AudioRejected),
        (410, AudioRejected),
        (500, AudioUnavailable),
        (503, AudioUnavailable),
        (408, AudioUnavailable),
        (429, AudioUnavailable),
    ],
)
def test_http_status_maps_to_permanent_or_transient(
    servers: Servers, status: int, kind: type[Exception]
) -> None:
    _fails(servers.url(f"/status/{status}"), servers.policy, kind, f"http-{status}")


def test_a_slow_drip_is_cut_at_the_total_deadline(servers: Servers) -> None:
    # Each byte arrives well within the 5 s read timeout; only the deadline can stop it.
    policy = replace(servers.policy, deadline_s=0.8)
    t0 = time.monotonic()
    _fails(servers.url("/drip"), policy, AudioUnavailable, "deadline")
    assert time.monotonic() - t0 < 3.0


def test_the_size_cap_is_enforced_while_streaming(servers: Servers) -> None:
    # The server sends 5000 bytes, then holds the connection open: reading everything
    # before checking would wait for the deadline instead of stopping at the cap.
    policy = replace(servers.policy, max_bytes=1000, deadline_s=10.0)
    t0 = time.monotonic()
    _fails(servers.url("/flood"), policy, AudioRejected, "too-large")
    assert time.monotonic() - t0 < 5.0
    _fails(servers.url("/declared-huge"), policy, AudioRejected, "too-large")


def test_network_failures_are_transient(servers: Servers, monkeypatch: pytest.MonkeyPatch) -> None:
    p = servers.policy
    _fails(f"http://127.0.0.1:{servers.garbage}/a.wav", p, AudioUnavailable, "bad-reply")
    _fails(servers.url("/short"), p, AudioUnavailable, "incomplete")
    _fails(servers.url("/silent"), replace(p, timeout_s=0.3), AudioUnavailable, "timeout")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    refused = replace(p, hosts=(f"127.0.0.1:{closed}",))
    _fails(f"http://127.0.0.1:{closed}/a.wav", refused, AudioUnavailable, "refused")

    def no_dns(*args: object, **kwargs: object) -> None:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(fetch.socket, "getaddrinfo", no_dns)
    cdn = replace(p, hosts=("cdn.example",))
    _fails("https://cdn.example/a.wav", cdn, AudioUnavailable, "dns")


def test_hosts_are_allowed_with_their_port_only(servers: Servers) -> None:
    bare = replace(servers.policy, hosts=("127.0.0.1",))
    _fails(servers.url("/ok.wav"), bare, AudioRejected, "not-allowed")
    with pytest.raises(AudioRejected) as info:
        resolve_audio_uri(servers.url("/ok.wav"), policy=bare)
    assert info.value.reason == "not-allowed"
    # A bare host means the scheme's default port, written or not.
    cdn = FetchPolicy(hosts=("cdn.example",))
    assert resolve_audio_uri("https://cdn.example/a.wav", policy=cdn)
    assert resolve_audio_uri("https://cdn.example:443/a.wav", policy=cdn)
    assert resolve_audio_uri("http://cdn.example/a.wav", policy=cdn)
    for uri in ("https://cdn.example:8443/a.wav", "http://cdn.example:19530/"):
        with pytest.raises(AudioRejected):
            resolve_audio_uri(uri, policy=cdn)


def test_the_stacks_own_endpoints_are_never_fetched(servers: Servers) -> None:
    port = servers.port
    by_name = replace(servers.policy, denied=(f"127.0.0.1:{port}",))
    _fails(servers.url("/ok.wav"), by_name, AudioRejected, "denied")
    # Allowed under another name that resolves to a denied address.
    alias = replace(servers.policy, hosts=(f"localhost:{port}",), denied=(f"127.0.0.1:{port}",))
    _fails(f"http://localhost:{port}/ok.wav", alias, AudioRejected, "denied")
    # Another loopback address reaches a wildcard-bound service: denied as well.
    other_lo = replace(servers.policy, hosts=(f"127.0.0.2:{port}",), denied=(f"127.0.0.1:{port}",))
    _fails(f"http://127.0.0.2:{port}/ok.wav", other_lo, AudioRejected, "denied")


def test_settings_deny_the_addresses_they_name() -> None:
    s = Settings(
        kafka_bootstrap="127.0.0.1:9092,kafka2:9093",
        triton_url="127.0.0.1:8001",
        milvus_uri="http://127.0.0.1:19530",
        api_port=8000,
        audio_hosts=["127.0.0.1:8001", "127.0.0.1:19530", "kafka2:9093", "127.0.0.1:8000"],
        audio_denied_endpoints=["127.0.0.1:8002"],
        audio_fetch_deadline_s=7.0,
        audio_max_bytes=1234,
    )
    p = policy_from_settings(s)
    assert p.deadline_s == 7.0 and p.max_bytes == 1234 and p.timeout_s <= 7.0
    assert "127.0.0.1:8002" in p.denied
    for host in s.audio_hosts:
        with pytest.raises(AudioRejected) as info:
            resolve_audio_uri(f"http://{host}/a.wav", policy=p)
        assert info.value.reason == "denied", host


def test_file_system_errors_are_rejections_with_a_reason(tmp_path: Path) -> None:
    root = tmp_path / "music"
    root.mkdir()
    (root / "empty.wav").write_bytes(b"")
    (root / "bad.ogg").write_bytes(b"not audio at all")
    (root / "sub").mkdir()
    (root / "loop.wav").symlink_to(root / "loop.wav")
    policy = FetchPolicy(roots=(root,))
    uri = root.as_uri()
    cases = [
        (f"{uri}/a%00b.wav", "bad-path"),
        (f"{uri}/{'n' * 300}.wav", "bad-path"),  # one name over NAME_MAX
        (f"{uri}/{'d/' * 3000}x.wav", "bad-path"),  # a path over PATH_MAX
        (f"{uri}/missing.wav", "missing"),
        (f"{uri}/sub", "bad-path"),
        (f"{uri}/loop.wav", "bad-path"),
        (f"{uri}/empty.wav", "undecodable"),
        (f"{uri}/bad.ogg", "undecodable"),
        ("file:///etc/passwd", "not-allowed"),
        ("ftp://example.org/a.wav", "not-allowed"),
        ("http://[::1/a.wav", "bad-uri"),
    ]
    for raw, reason in cases:
        with pytest.raises(AudioRejected) as info:
            prepare_audio(resolve_audio_uri(raw, policy=policy), spec=SPEC, max_seconds=5)
        assert info.value.reason == reason, (raw[:80], info.value.reason, str(info.value))
    for location in ("a\x00b.wav", str(root / ("n" * 300))):
        with pytest.raises(AudioRejected) as info:
            prepare_audio(location, spec=SPEC, max_seconds=5)
        assert info.value.reason == "bad-path"


def test_errors_keep_their_reason_across_pickling() -> None:
    for exc in (AudioRejected("http-404", "gone"), AudioUnavailable("dns", "no dns")):
        back = pickle.loads(pickle.dumps(exc))
        assert type(back) is type(exc) and back.reason == exc.reason and str(back) == str(exc)
    assert isinstance(AudioUnavailable("x", "y"), OSError)
    assert isinstance(AudioRejected("x", "y"), ValueError)


def test_the_embedded_stack_denies_every_port_it_serves(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from infra.stack import EmbeddedStack

    s = Settings(run_dir=tmp_path, workers=2, api_port=0, kafka_bootstrap="127.0.0.1:40001")
    st = EmbeddedStack(settings=s)
    starters = {
        "triton": SimpleNamespace(http_port=40002, grpc_port=40003, metrics_port=40004),
        "milvus": SimpleNamespace(http_port=40005),
    }
    update = {"triton_url": "127.0.0.1:40002", "milvus_uri": "http://127.0.0.1:40006"}
    out = st._own_endpoints(s, starters, update)
    r = s.model_copy(update={**update, **out})
    api, metrics = r.api_port, sorted(st._metrics_ports.values())
    assert api and len(metrics) == 2
    own = [40001, 40002, 40003, 40004, 40005, 40006, api, *metrics]
    assert {f"127.0.0.1:{p}" for p in own} <= set(r.audio_denied_endpoints)
    # Even when an operator allows them, every one of them is refused.
    allowed = r.model_copy(update={"audio_hosts": [f"127.0.0.1:{p}" for p in own]})
    policy = policy_from_settings(allowed)
    for port in own:
        with pytest.raises(AudioRejected) as info:
            resolve_audio_uri(f"http://127.0.0.1:{port}/a.wav", policy=policy)
        assert info.value.reason == "denied", port


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """An HTTPS server on 127.0.0.1 with a self-signed certificate for that address."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.stop = threading.Event()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield int(srv.server_address[1]), cert
    srv.stop.set()
    srv.shutdown()
    srv.server_close()


def test_https_is_verified_pinned_and_bounded_by_the_deadline(
    tls_server: tuple[int, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    port, cert = tls_server
    policy = FetchPolicy(hosts=(f"127.0.0.1:{port}",), timeout_s=5.0, deadline_s=5.0)
    url = f"https://127.0.0.1:{port}"
    # An untrusted certificate: refused (the TLS layer's own error, counted as transient).
    _fails(f"{url}/ok.wav", policy, AudioUnavailable, "tls")
    # Trusting the test CA: the pinned connection still verifies the name it was given.
    real = ssl.create_default_context
    monkeypatch.setattr(fetch.ssl, "create_default_context", lambda: real(cafile=str(cert)))
    a = prepare_audio(f"{url}/ok.wav", spec=SPEC, max_seconds=5, policy=policy)
    assert a.patches.shape[0] >= 1
    t0 = time.monotonic()
    _fails(f"{url}/drip", replace(policy, deadline_s=0.8), AudioUnavailable, "deadline")
    assert time.monotonic() - t0 < 3.0


@pytest.mark.parametrize(
    ("path", "kind", "reason"),
    [
        ("/status/404", AudioRejected, "http-404"),
        ("/status/503", AudioUnavailable, "http-503"),
        ("/flood", AudioRejected, "too-large"),
    ],
)
def test_a_signed_url_token_never_reaches_the_error(
    servers: Servers,
    path: str,
    kind: type[Exception],
    reason: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The error (which becomes a log line and a dead letter's detail) keeps host, port and
    path of a signed URL, never its query, fragment or user-info."""
    url = servers.url(path).replace("http://", "http://user:pa55word@") + "?token=S3CRET#frag"
    policy = replace(servers.policy, max_bytes=1000, deadline_s=10.0)
    exc = _fails(url, policy, kind, reason)
    text = str(exc) + caplog.text
    assert "S3CRET" not in text and "pa55word" not in text and "frag" not in text
    assert f"127.0.0.1:{servers.port}{path}" in str(exc)
