"""The one home of Kafka client security: settings -> what each Kafka client library takes.

Three client libraries talk to Kafka here, each with its own spelling of the same thing:
Faust (``broker_credentials``), aiokafka (``security_protocol``, ``sasl_*``,
``ssl_context``) and kafka-python (the same names, plus its own checks). Every client is
built with :class:`KafkaSecurity` so that SASL_SSL/SCRAM in production is one set of
settings (``kafka_security_protocol``, ``kafka_sasl_mechanism``, ``kafka_username``,
``kafka_password``, ``kafka_ssl_*``), not a dozen call sites to keep in step.

Why in ``serving``: the layers go schemas <- streams -> serving -> models, and both the
workers (``streams``) and the query API (``serving.api``) open Kafka clients; ``serving``
is the lowest layer both may import (``schemas`` holds data only and imports no client).
Faust is imported only inside :meth:`KafkaSecurity.faust_credentials`, so the API process
does not pull it in.

The password stays a ``SecretStr`` until the moment a client is built, and ``repr`` of this
object shows no secret.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from serving.tls import tls_context

if TYPE_CHECKING:
    import faust

    from schemas.settings import Settings


@dataclass(frozen=True)
class KafkaSecurity:
    """How a Kafka client authenticates and encrypts; the default is plaintext (loopback)."""

    protocol: str = "PLAINTEXT"  # PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL (Settings checks)
    mechanism: str = "SCRAM-SHA-512"
    username: str = ""
    password: SecretStr = field(default_factory=lambda: SecretStr(""))
    cafile: Path | None = None
    certfile: Path | None = None
    keyfile: Path | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> KafkaSecurity:
        s = settings
        return cls(
            protocol=s.kafka_security_protocol,
            mechanism=s.kafka_sasl_mechanism,
            username=s.kafka_username,
            password=s.kafka_password,
            cafile=s.kafka_ssl_cafile,
            certfile=s.kafka_ssl_certfile,
            keyfile=s.kafka_ssl_keyfile,
        )

    @property
    def uses_tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    def ssl_context(self) -> ssl.SSLContext | None:
        """A fresh TLS context for SSL/SASL_SSL (each client owns its own); None otherwise.

        Certificate and host name checks are always on for Kafka: TLS that accepts any
        certificate would hand the SCRAM exchange to whoever answers first.
        """
        if not self.uses_tls:
            return None
        return tls_context(cafile=self.cafile, certfile=self.certfile, keyfile=self.keyfile)

    def aiokafka(self) -> dict[str, Any]:
        """Keyword arguments for ``AIOKafkaConsumer`` / ``AIOKafkaProducer`` / admin."""
        if self.protocol == "PLAINTEXT":
            return {}  # the libraries' own default: call sites stay as they were
        kw: dict[str, Any] = {"security_protocol": self.protocol}
        if self.uses_tls:
            kw["ssl_context"] = self.ssl_context()
        if self.uses_sasl:
            kw |= {
                "sasl_mechanism": self.mechanism,
                "sasl_plain_username": self.username,
                "sasl_plain_password": self.password.get_secret_value(),
            }
        return kw

    def kafka_python(self) -> dict[str, Any]:
        """Keyword arguments for kafka-python's ``KafkaAdminClient`` / producer / consumer.

        Same names as aiokafka's for what we use; kafka-python takes a ready
        ``ssl_context`` and then ignores its other ``ssl_*`` options.
        """
        return self.aiokafka()

    def faust_credentials(self) -> faust.types.auth.CredentialsT | None:
        """``broker_credentials`` for ``faust.App``; None = plaintext (Faust's default).

        Faust derives the protocol from the credentials' type: SASLCredentials with a
        context is SASL_SSL, without one SASL_PLAINTEXT; SSLCredentials is SSL.
        """
        import faust

        if self.protocol == "PLAINTEXT":
            return None
        if self.protocol == "SSL":
            return faust.SSLCredentials(self.ssl_context())
        return faust.SASLCredentials(
            username=self.username,
            password=self.password.get_secret_value(),
            mechanism=self.mechanism,
            ssl_context=self.ssl_context(),  # None for SASL_PLAINTEXT
        )


PLAINTEXT = KafkaSecurity()
