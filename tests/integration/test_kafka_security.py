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
from infra.kafka_broker import BrokerTuning, KafkaBroker, SaslSslListener
from infra.procs import free_port
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
        tuning=BrokerTuning(
            heap_mb=s.kafka_heap_mb,
            partitions=s.partitions,
            retention_ms=s.kafka_retention_ms,
            retention_bytes=s.kafka_retention_bytes,
            segment_bytes=16 * 1024 * 1024,
        ),
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


def test_a_wrong_password_is_refused(secure_broker: tuple[KafkaBroker, str], tls: Path) -> None:
    import kafka.errors as kerrors
    from kafka.admin import KafkaAdminClient

    broker, _ = secure_broker
    wrong = KafkaSecurity.from_settings(_client_settings(broker, tls, "not-the-password"))
    with pytest.raises(
        (
            kerrors.SaslAuthenticationFailedError,
            kerrors.NoBrokersAvailable,
            kerrors.KafkaTimeoutError,
        )
    ) as info:
        KafkaAdminClient(
            bootstrap_servers=broker.sasl_ssl_bootstrap,
            request_timeout_ms=5000,
            bootstrap_timeout_ms=5000,
            **wrong.kafka_python(),
        ).list_topics()
    assert "password" not in str(info.value).lower() or "not-the-password" not in str(info.value)


async def test_a_wrong_password_is_refused_to_aiokafka(
    secure_broker: tuple[KafkaBroker, str], tls: Path
) -> None:
    import kafka.errors
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaConnectionError, KafkaError

    broker, _ = secure_broker
    wrong = KafkaSecurity.from_settings(_client_settings(broker, tls, "not-the-password"))
    producer = AIOKafkaProducer(
        bootstrap_servers=broker.sasl_ssl_bootstrap, request_timeout_ms=5000, **wrong.aiokafka()
    )
    with pytest.raises((KafkaError, KafkaConnectionError, kafka.errors.KafkaError)):
        await producer.start()
    await producer.stop()


def test_a_plaintext_client_is_refused_on_the_sasl_ssl_listener(
    secure_broker: tuple[KafkaBroker, str],
) -> None:
    import kafka.errors as kerrors
    from kafka.admin import KafkaAdminClient

    broker, _ = secure_broker
    with pytest.raises(
        (kerrors.NoBrokersAvailable, kerrors.KafkaTimeoutError, kerrors.KafkaConnectionError)
    ):
        KafkaAdminClient(
            bootstrap_servers=broker.sasl_ssl_bootstrap,
            request_timeout_ms=4000,
            bootstrap_timeout_ms=4000,
        ).list_topics()
