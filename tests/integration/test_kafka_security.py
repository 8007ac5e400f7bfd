"""The production security path on the real broker: SASL_SSL with SCRAM-SHA-512.

The embedded Apache Kafka gets a listener like docker-compose.yml's CLIENT listener (TLS
material from infra/prod/kafka/make-tls.sh, the SCRAM credential written at format time),
and the whole stack, a worker, the query API and a platform's producer, runs through it
with the settings production uses. A wrong password and a plaintext client are refused.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from infra.demo import Bus
from infra.kafka_broker import KafkaBroker, SaslSslListener, tuning_from
from infra.procs import free_port, wait_until
from infra.stack import PROJECT_ROOT, EmbeddedStack
from schemas.settings import Settings
from serving.kafka_security import KafkaSecurity
from tests.integration.conftest import _running
from tests.integration.events import answers, play, stack_settings

USER = "resonate"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CA and the broker's PKCS12 pair, made by the production script."""
    out = tmp_path_factory.mktemp("tls")
    script = PROJECT_ROOT / "infra" / "prod" / "kafka" / "make-tls.sh"
    subprocess.run(
        ["bash", str(script)],
        env={"OUT": str(out), "PATH": "/usr/bin:/bin"},
        check=True,
        capture_output=True,
        timeout=60,
    )
    return out / "kafka-tls"


@pytest.fixture(scope="module")
def secure_broker(
    tmp_path_factory: pytest.TempPathFactory, tls: Path
) -> Iterator[tuple[KafkaBroker, str]]:
    """A broker whose clients' listener is SASL_SSL only; yields it and the password."""
    folder = tmp_path_factory.mktemp("kafka-sasl")
    password = uuid.uuid4().hex
    s = Settings()
    broker = KafkaBroker(
        host="127.0.0.1",
        port=0,
        data_dir=folder,
        log_path=folder / "kafka.log",
        tuning=tuning_from(s),
        libs=s.kafka_libs,
        sasl_ssl=SaslSslListener(
            port=free_port(),
            keystore=tls / "kafka.p12",
            keystore_password=SecretStr((tls / "kafka.p12.pass").read_text().strip()),
            users={USER: SecretStr(password)},
        ),
    )
    with _running(broker, "Kafka broker with a SASL_SSL listener"):
        yield broker, password


def _client_settings(broker: KafkaBroker, tls: Path, password: str, **extra: Any) -> Settings:
    return Settings(
        kafka_bootstrap=broker.sasl_ssl_bootstrap,
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_username=USER,
        kafka_password=SecretStr(password),
        kafka_ssl_cafile=tls / "ca.pem",
        **extra,
    )


def test_a_worker_the_api_and_a_producer_run_through_sasl_ssl(
    secure_broker: tuple[KafkaBroker, str],
    tls: Path,
    tmp_path_factory: pytest.TempPathFactory,
    weights_path: Path,
) -> None:
    broker, password = secure_broker
    base = _client_settings(broker, tls, password)
    settings = stack_settings(
        tmp_path_factory.mktemp("stack-sasl"),
        weights_path,
        **{
            k: getattr(base, k)
            for k in (
                "kafka_bootstrap",
                "kafka_security_protocol",
                "kafka_sasl_mechanism",
                "kafka_username",
                "kafka_password",
                "kafka_ssl_cafile",
            )
        },
    )
    with EmbeddedStack(settings=settings) as stack:
        bus = Bus(stack.settings)  # the platform's producer and reader, SASL_SSL too
        try:
            now = datetime.now(UTC)
            ids = {
                play(bus, stack.settings, "secure-listener", f"t{i}", "play", now) for i in range(3)
            }
            got = answers(bus, ids, timeout_s=90)
            assert set(got) == ids  # the worker consumed and produced through SASL_SSL
            url = f"{stack.api_url}/users/secure-listener/recommendations"
            with urllib.request.urlopen(url, timeout=30) as resp:  # the API read it too
                assert json.loads(resp.read())["user_id"] == "secure-listener"
        finally:
            bus.close()


def _list_topics(bootstrap: str, security: KafkaSecurity) -> set[str]:
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap,
        request_timeout_ms=5000,
        bootstrap_timeout_ms=5000,
        **security.kafka_python(),
    )
    try:
        return set(admin.list_topics())
    finally:
        admin.close()


def test_a_wrong_password_is_refused(secure_broker: tuple[KafkaBroker, str], tls: Path) -> None:
    import kafka.errors as kerrors

    broker, password = secure_broker
    right = KafkaSecurity.from_settings(_client_settings(broker, tls, password))
    assert _list_topics(broker.sasl_ssl_bootstrap, right) is not None  # the control
    wrong = KafkaSecurity.from_settings(_client_settings(broker, tls, "not-the-password"))
    with pytest.raises(kerrors.KafkaError):
        _list_topics(broker.sasl_ssl_bootstrap, wrong)
    # Neither client names the cause (both report a failed bootstrap); the broker does.
    wait_until(
        lambda: "invalid credentials" in broker.log_path.read_text(),
        what="the broker's log of the failed SCRAM authentication",
        timeout_s=10,
    )


async def test_a_wrong_password_is_refused_to_aiokafka(
    secure_broker: tuple[KafkaBroker, str], tls: Path
) -> None:
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError

    broker, password = secure_broker
    for pw, refused in ((password, False), ("not-the-password", True)):
        security = KafkaSecurity.from_settings(_client_settings(broker, tls, pw))
        producer = AIOKafkaProducer(
            bootstrap_servers=broker.sasl_ssl_bootstrap,
            request_timeout_ms=5000,
            **security.aiokafka(),
        )
        try:
            if refused:
                with pytest.raises(KafkaError):
                    await producer.start()
            else:
                await producer.start()  # the control: the right password gets in
        finally:
            await producer.stop()


def test_a_plaintext_client_is_refused_on_the_sasl_ssl_listener(
    secure_broker: tuple[KafkaBroker, str],
) -> None:
    import kafka.errors as kerrors

    from serving.kafka_security import PLAINTEXT

    broker, _ = secure_broker
    assert _list_topics(broker.bootstrap, PLAINTEXT) is not None  # loopback-only INTERNAL
    with pytest.raises(kerrors.KafkaError):
        _list_topics(broker.sasl_ssl_bootstrap, PLAINTEXT)
