"""Production security settings: secrets never shown, Kafka and Triton TLS wiring.

The Kafka wiring is checked here on the objects built (Faust credentials, aiokafka and
kafka-python arguments, a TLS context that trusts a throwaway CA made here with the
``openssl`` CLI); tests/integration/test_kafka_security.py runs it against the embedded
Kafka's SASL_SSL listener. Triton TLS is checked end to end
against a small HTTPS server on loopback that answers the KServe readiness probes.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import faust
import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from pydantic import ValidationError

from schemas.settings import Settings
from serving.kafka_security import KafkaSecurity
from serving.tls import split_triton_url, tls_context

PASSWORD = "kafka-pw-7f3a91"
TOKEN = "root:milvus-pw-c04e2b"
API_KEY = "api-key-5d19e8"
SECRETS = (PASSWORD, TOKEN, "milvus-pw-c04e2b", API_KEY)


@dataclass(frozen=True)
class Pki:
    ca: Path
    cert: Path
    key: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A throwaway CA and a server certificate for 127.0.0.1/localhost, signed by it."""
    d = tmp_path_factory.mktemp("pki")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=resonate-test-ca",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    run("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    (d / "ext.cnf").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
        "extendedKeyUsage=serverAuth\n"
    )
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf")  # fmt: skip
    return Pki(ca=d / "ca.pem", cert=d / "server.pem", key=d / "server.key")


def _secure(tmp_path: Path, pki: Pki, **kw: Any) -> Settings:
    values: dict[str, Any] = {
        "kafka_bootstrap": "broker-1:9094,broker-2:9094",
        "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_mechanism": "SCRAM-SHA-512",
        "kafka_username": "resonate",
        "kafka_password": PASSWORD,
        "kafka_ssl_cafile": pki.ca,
        "milvus_uri": "http://127.0.0.1:1",
        "milvus_token": TOKEN,
        "triton_url": "https://127.0.0.1:1",
        "api_key": API_KEY,
        "run_dir": tmp_path,
    }
    return Settings(**(values | kw))


def _clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


# --- secrets are never shown ------------------------------------------------------------


def test_secrets_absent_from_repr_dumps_and_logs(
    tmp_path: Path, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    s = _secure(tmp_path, pki)
    security = KafkaSecurity.from_settings(s)
    for text in (
        repr(s),
        str(s),
        s.model_dump_json(),
        json.dumps(s.model_dump(mode="json")),
        repr(security),
        repr(security.faust_credentials()),
    ):
        _clean(text)
    with caplog.at_level(logging.INFO):
        logging.getLogger("resonate.test").info("settings %s / %r", s, security)
    _clean(caplog.text)
    # ... but the clients get the real values.
    assert security.aiokafka()["sasl_plain_password"] == PASSWORD
    assert s.milvus_token.get_secret_value() == TOKEN


def test_child_processes_get_the_secrets_and_stack_json_does_not(
    tmp_path: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    from infra.stack import EmbeddedStack, settings_env

    s = _secure(tmp_path, pki)
    env = settings_env(s)  # what `resonate up` hands its workers and API
    assert env["RESONATE_KAFKA_PASSWORD"] == PASSWORD
    assert env["RESONATE_MILVUS_TOKEN"] == TOKEN
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    again = Settings()
    assert again.kafka_password.get_secret_value() == PASSWORD
    assert again.api_key.get_secret_value() == API_KEY
    state = EmbeddedStack(settings=s).write_state()
    _clean(state.read_text())


def test_status_screen_and_json_show_no_secret(tmp_path: Path, pki: Pki) -> None:
    from infra.status import collect, target_from

    s = _secure(tmp_path, pki, kafka_bootstrap="127.0.0.1:1")
    target = target_from(s, worker_metrics=["http://127.0.0.1:1/metrics"])
    _clean(repr(target))
    report = collect(target, window_s=0.0, timeout_s=0.5)  # nothing answers: every probe fails
    _clean(report.render())
    _clean(json.dumps(report.to_dict()))


def test_validation_errors_hide_the_input() -> None:
    with pytest.raises(ValidationError) as err:
        Settings(kafka_security_protocol="SASL_SSL", kafka_password=PASSWORD)  # no user name
    _clean(str(err.value))
    assert "kafka_username" in str(err.value)


def test_credentials_in_addresses_are_refused() -> None:
    for kw in (
        {"milvus_uri": "http://root:pw@milvus:19530"},
        {"triton_url": "https://u:pw@triton:8000"},
        {"kafka_bootstrap": "u:pw@kafka:9092"},
    ):
        with pytest.raises(ValidationError, match="no user:password@"):
            Settings(**kw)


async def test_dead_lettered_events_are_logged_by_length_not_content(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Logs are read more widely than the dead-letter topic: no bytes of a message in them."""
    from streams.deadletter import DeadLetters, Failed, InvalidMessage, Source
    from streams.metrics import Metrics
    from streams.spool import Spool

    raw = b'{"track_id": "t1", "uri": "file:///home/someone/private-recording.wav"'
    letters = DeadLetters(
        app=faust.App("sec-test"),
        settings=Settings(),
        metrics=Metrics(),
        spool=Spool(folder=Path("/nonexistent"), max_bytes=1 << 20),
    )

    async def deliver(batch: Any) -> None:
        pass  # no broker here; the bytes go to the dead-letter topic in production

    monkeypatch.setattr(letters, "_deliver", deliver)
    source = Source(topic="track-uploads", partition=0, offset=3, key=b"t1", value=raw, headers=())
    with caplog.at_level(logging.INFO):
        await letters.dead_letter_many(
            [Failed(source, "invalid", InvalidMessage("message: Invalid JSON"))],
            role="track-uploads",
        )
    assert f"{len(raw)} bytes" in caplog.text
    assert "private-recording" not in caplog.text


# --- Kafka --------------------------------------------------------------------------------


def test_plaintext_default_changes_nothing() -> None:
    security = KafkaSecurity.from_settings(Settings())
    assert security.aiokafka() == {} and security.kafka_python() == {}
    assert security.faust_credentials() is None
    assert security.ssl_context() is None


def test_sasl_ssl_scram_for_faust_aiokafka_and_kafka_python(tmp_path: Path, pki: Pki) -> None:
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.admin import KafkaAdminClient

    security = KafkaSecurity.from_settings(_secure(tmp_path, pki))
    kw = security.aiokafka()
    assert kw["security_protocol"] == "SASL_SSL"
    assert kw["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (kw["sasl_plain_username"], kw["sasl_plain_password"]) == ("resonate", PASSWORD)
    ctx = kw["ssl_context"]
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2
    subjects = [dict(x[0] for x in c["subject"]) for c in ctx.get_ca_certs()]
    assert {"commonName": "resonate-test-ca"} in subjects  # our CA, loaded
    # kafka-python knows every argument (it would raise on an unknown one at connect time).
    for cls in (KafkaAdminClient, KafkaProducer, KafkaConsumer):
        assert set(security.kafka_python()) <= set(cls.DEFAULT_CONFIG), cls.__name__
    creds = security.faust_credentials()
    assert isinstance(creds, faust.SASLCredentials)
    # What Faust's aiokafka driver makes of it is what we give aiokafka directly.
    auth = credentials_to_aiokafka_auth(creds)
    assert {k: v for k, v in auth.items() if k != "ssl_context"} == {
        k: v for k, v in kw.items() if k != "ssl_context"
    }
    assert isinstance(auth["ssl_context"], ssl.SSLContext)


def test_other_protocols(tmp_path: Path, pki: Pki) -> None:
    sasl_plain = KafkaSecurity.from_settings(
        _secure(tmp_path, pki, kafka_security_protocol="SASL_PLAINTEXT")
    )
    assert "ssl_context" not in sasl_plain.aiokafka()
    assert credentials_to_aiokafka_auth(sasl_plain.faust_credentials())["security_protocol"] == (
        "SASL_PLAINTEXT"
    )
    tls = KafkaSecurity.from_settings(
        _secure(
            tmp_path,
            pki,
            kafka_security_protocol="SSL",
            kafka_ssl_certfile=pki.cert,  # any cert/key pair shows mutual TLS loads
            kafka_ssl_keyfile=pki.key,
        )
    )
    assert tls.aiokafka().keys() == {"security_protocol", "ssl_context"}
    assert isinstance(tls.faust_credentials(), faust.SSLCredentials)
    with pytest.raises(ValidationError, match="go together"):
        _secure(tmp_path, pki, kafka_ssl_certfile=pki.cert)


async def test_aiokafka_clients_accept_the_arguments(tmp_path: Path, pki: Pki) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    kw = KafkaSecurity.from_settings(_secure(tmp_path, pki)).aiokafka()
    consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1", **kw)
    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:1", **kw)
    try:
        for inner in (consumer._client, producer.client):
            assert inner._security_protocol == "SASL_SSL"
            assert inner._sasl_mechanism == "SCRAM-SHA-512"
            assert inner._ssl_context is kw["ssl_context"]
    finally:
        await consumer.stop()
        await producer.stop()


def test_the_worker_app_gets_the_credentials(tmp_path: Path, pki: Pki) -> None:
    from models.convert_musicnn import MUSICNN_CARD
    from streams.app import build_app
    from streams.clients import Deps
    from streams.metrics import Metrics

    def app_for(s: Settings) -> faust.App:
        return build_app(
            Deps(
                settings=s,
                card=MUSICNN_CARD,
                metrics=Metrics(),
                store_factory=lambda: None,  # type: ignore[arg-type,return-value]
                encoder_factory=lambda: None,  # type: ignore[arg-type,return-value]
            )
        )

    secure = app_for(_secure(tmp_path, pki))
    assert isinstance(secure.conf.broker_credentials, faust.SASLCredentials)
    plain = app_for(Settings(kafka_bootstrap="localhost:1"))
    assert plain.conf.broker_credentials is None


# --- Triton over TLS ---------------------------------------------------------------------


class _Ready(BaseHTTPRequestHandler):
    """Answers the KServe v2 readiness probes with 200 and nothing else."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        ok = self.path in ("/v2/health/live", "/v2/health/ready") or self.path.endswith("/ready")
        self.send_response(200 if ok else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def https_triton(pki: Pki) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ready)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki.cert, pki.key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_triton_url_scheme() -> None:
    assert split_triton_url("https://t:8000/") == ("t:8000", True)
    assert split_triton_url("http://t:8000") == ("t:8000", False)
    assert split_triton_url("t:8000") == ("t:8000", False)


async def test_async_triton_client_speaks_verified_tls(https_triton: str, pki: Pki) -> None:
    from serving.user_encoder_client import UserEncoderClient, UserEncoderUnavailable

    async with UserEncoderClient(url=https_triton, ssl_cafile=pki.ca, timeout_s=5) as client:
        assert client.tls
    # Without our CA the certificate is not trusted: no silent fallback to plaintext or
    # to an unverified connection.
    with pytest.raises(UserEncoderUnavailable, match="(?i)certificate"):
        async with UserEncoderClient(url=https_triton, timeout_s=1):
            pass
    async with UserEncoderClient(url=https_triton, ssl_verify=False, timeout_s=5):
        pass


def test_sync_triton_probe_speaks_verified_tls(https_triton: str, pki: Pki) -> None:
    from serving.triton_client import TritonUnavailable, wait_model_ready

    wait_model_ready(https_triton, "musicnn", 5, ssl_cafile=pki.ca)
    with pytest.raises(TritonUnavailable):
        wait_model_ready(https_triton, "musicnn", 1)


def test_tls_context_loads_the_ca(pki: Pki) -> None:
    ctx = tls_context(cafile=pki.ca)
    assert any(
        dict(x[0] for x in c["subject"]).get("commonName") == "resonate-test-ca"
        for c in ctx.get_ca_certs()
    )
    with pytest.raises(OSError):
        tls_context(cafile=pki.ca.with_name("missing.pem"))


# --- log files are private ----------------------------------------------------------------


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_log_files_are_created_and_tightened_to_0600(tmp_path: Path) -> None:
    from infra.procs import open_private_log

    old = os.umask(0o022)  # the usual umask: without care, logs would be 0644
    try:
        fresh = tmp_path / "logs" / "worker-0.log"
        with open_private_log(fresh) as fh:
            fh.write(b"x\n")
        assert _mode(fresh) == 0o600 and _mode(fresh.parent) == 0o700
        loose = tmp_path / "old.log"
        loose.write_text("earlier run\n")
        loose.chmod(0o644)
        open_private_log(loose).close()
        assert _mode(loose) == 0o600 and loose.read_text() == "earlier run\n"  # appended to
    finally:
        os.umask(old)


def test_child_process_logs_and_stack_json_are_private(tmp_path: Path) -> None:
    import sys

    from infra.procs import ChildProcess
    from infra.stack import EmbeddedStack

    class Echo(ChildProcess):
        def start(self) -> Echo:
            self._launch([sys.executable, "-c", "print('hello')"])
            return self

    child = Echo(log_path=tmp_path / "logs" / "echo.log", startup_timeout_s=5).start()
    assert child._proc is not None and child._proc.wait(timeout=30) == 0
    child.stop()
    assert _mode(child.log_path) == 0o600
    assert "hello" in child.log_path.read_text()
    state = EmbeddedStack(settings=Settings(run_dir=tmp_path)).write_state()
    assert _mode(state) == 0o600


def test_demo_log_is_private(tmp_path: Path) -> None:
    from infra.demo_view import quiet_logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        path = quiet_logging(tmp_path / "logs" / "demo.log")
        logging.getLogger("resonate.test").warning("into the demo log")
        assert _mode(path) == 0o600
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
            h.close()
        for h in handlers:
            root.addHandler(h)
        root.setLevel(level)


def test_kafka_tls_script_makes_a_broker_certificate_our_clients_trust(tmp_path: Path) -> None:
    """infra/prod/kafka/make-tls.sh: the broker's PKCS12 verifies, by the names clients use,
    against the CA the workers get (the broker itself is not run here: no Docker)."""
    import shutil
    import socket

    root = Path(__file__).resolve().parents[2]
    script = tmp_path / "infra" / "prod" / "kafka" / "make-tls.sh"
    script.parent.mkdir(parents=True)
    shutil.copy(root / "infra" / "prod" / "kafka" / "make-tls.sh", script)
    subprocess.run(["bash", str(script)], check=True, capture_output=True)
    subprocess.run(["bash", str(script)], check=True, capture_output=True)  # idempotent
    tls = tmp_path / "run" / "kafka-tls"
    assert _mode(tmp_path / "run" / "kafka-ca" / "ca.key") == 0o600
    assert not (tls / "ca.key").exists()  # the CA key is never mounted
    pem = tmp_path / "broker.pem"
    subprocess.run(
        ["openssl", "pkcs12", "-in", str(tls / "kafka.p12"), "-nodes", "-out", str(pem),
         "-passin", f"file:{tls / 'kafka.p12.pass'}"],
        check=True, capture_output=True,
    )  # fmt: skip
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(pem)
    client_ctx = KafkaSecurity(protocol="SSL", cafile=tls / "ca.pem").ssl_context()
    assert client_ctx is not None
    errors: list[Exception] = []

    def serve(listener: socket.socket) -> None:
        conn, _ = listener.accept()
        try:
            with server_ctx.wrap_socket(conn, server_side=True):
                pass
        except (ssl.SSLError, OSError) as exc:
            errors.append(exc)

    for name in ("kafka", "localhost"):  # compose network, host
        with socket.create_server(("127.0.0.1", 0)) as listener:
            thread = threading.Thread(target=serve, args=(listener,), daemon=True)
            thread.start()
            port = listener.getsockname()[1]
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
                with client_ctx.wrap_socket(raw, server_hostname=name) as tls_sock:
                    assert tls_sock.version() in ("TLSv1.2", "TLSv1.3")
            thread.join(timeout=5)
    assert not errors
    with pytest.raises(ssl.SSLCertVerificationError):  # a name the certificate lacks
        with socket.create_server(("127.0.0.1", 0)) as listener:
            threading.Thread(target=serve, args=(listener,), daemon=True).start()
            port = listener.getsockname()[1]
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
                client_ctx.wrap_socket(raw, server_hostname="attacker.example")


def test_api_key_is_compared_as_a_secret() -> None:
    from types import SimpleNamespace

    from serving.api.problems import ProblemError
    from serving.api.routes import require_key

    locked = SimpleNamespace(settings=Settings(api_key=API_KEY))
    require_key(locked, API_KEY)  # type: ignore[arg-type]
    for wrong in (None, "", "api-key"):
        with pytest.raises(ProblemError):
            require_key(locked, wrong)  # type: ignore[arg-type]
    require_key(SimpleNamespace(settings=Settings()), None)  # type: ignore[arg-type]


def test_every_kafka_client_takes_the_security_arguments() -> None:
    """A Kafka client added later without ``**security...()`` would talk plaintext to a
        SASL_SSL broker; only the embedded broker's own readiness probe (its plaintext listener,
    on loopback) is exempt."""
    import ast

    root = Path(__file__).resolve().parents[2]
    clients = {"AIOKafkaConsumer", "AIOKafkaProducer", "KafkaAdminClient", "KafkaProducer"}
    clients |= {"KafkaConsumer"}
    missing, seen = [], 0
    for folder in ("infra", "serving", "streams"):
        for path in (root / folder).rglob("*.py"):
            if path.name == "kafka_broker.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and getattr(node.func, "id", None) in clients:
                    seen += 1
                    if not any(k.arg is None for k in node.keywords):  # no **kwargs
                        missing.append(f"{path.relative_to(root)}:{node.lineno}")
    assert seen >= 10 and not missing, missing
