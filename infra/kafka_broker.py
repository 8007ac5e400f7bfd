"""The embedded broker: Apache Kafka in KRaft mode (one combined broker + controller).

The broker is the one production runs (`docker-compose.yml`), from Maven Central's jars:
`infra/kafka/pom.xml` pins the version and `bash infra/setup.sh` copies the runtime jars
into ``<venv>/kafka/libs``. It runs on Java 17 with a capped heap, tuned for one machine:
one replica of everything, few partitions for the internal topics, no initial rebalance
delay, and retention on every topic so a day-long run keeps flat memory and disk.

Storage is formatted afresh under ``<run_dir>/kafka`` at each start: the embedded stack is
ephemeral (its Milvus collection is wiped at start too), and a restart from empty topics is
what development, tests and benchmarks want.

An optional SASL_SSL listener (SCRAM-SHA-512, TLS from `infra/prod/kafka/make-tls.sh`)
mirrors the production listener so the security path is tested on the real broker; the
plaintext listener then plays the compose file's loopback-only INTERNAL listener.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from infra.procs import ChildProcess, StartupError, free_port, port_open, write_private_text

if TYPE_CHECKING:
    from schemas.settings import Settings

log = logging.getLogger(__name__)

POM = Path(__file__).resolve().parent / "kafka" / "pom.xml"
SCRAM_MECHANISM = "SCRAM-SHA-512"


def kafka_version() -> str:
    """The project's one Kafka version: ``kafka.version`` of ``infra/kafka/pom.xml``."""
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", POM.read_text())
    if match is None:
        raise RuntimeError(f"{POM} names no <kafka.version>")
    return match.group(1).strip()


def default_libs_dir() -> Path:
    """Where `infra/setup.sh` puts the broker's jars: inside the virtualenv, like every other
    installed dependency (nothing is written outside the project)."""
    return Path(sys.prefix) / "kafka" / "libs"


def java_binary() -> Path:
    """``$JAVA_HOME/bin/java`` or the ``java`` on PATH; Kafka 4's broker needs Java 17+."""
    home = os.environ.get("JAVA_HOME")
    candidate = Path(home) / "bin" / "java" if home else None
    if candidate is None or not candidate.is_file():
        found = shutil.which("java")
        candidate = Path(found) if found else None
    if candidate is None:
        raise StartupError(
            "no Java runtime found: the embedded Kafka broker needs Java 17+ "
            "(`bash infra/setup.sh` installs Debian's openjdk-17-jre-headless), or set "
            "RESONATE_KAFKA_BOOTSTRAP to use an existing Kafka"
        )
    return candidate


def check_libs(libs: Path) -> Path:
    """``libs`` if it holds the broker's jars, else a StartupError saying how to get them."""
    version = kafka_version()
    if not (libs / f"kafka_2.13-{version}.jar").is_file():
        raise StartupError(
            f"Kafka {version} jars not found in {libs}: run `bash infra/setup.sh` (it copies "
            "them from Maven Central), or set RESONATE_KAFKA_BOOTSTRAP to use an existing Kafka"
        )
    return libs


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, base64url without padding (22 characters)."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def _probe(bootstrap: str, timeout_s: float, ask: Callable[[Any], object]) -> bool:
    """True when ``ask(admin)`` succeeds against the plaintext listener at ``bootstrap``."""
    from kafka.admin import KafkaAdminClient

    ms = int(timeout_s * 1000)
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="resonate-readiness",
        request_timeout_ms=ms,
        bootstrap_timeout_ms=ms,
    )
    try:
        ask(admin)
        return True
    finally:
        admin.close()


def kafka_metadata_ok(bootstrap: str, *, timeout_s: float = 2.0) -> bool:
    """True when a real Kafka Metadata request to ``bootstrap`` (plaintext) succeeds.

    An open TCP port is not enough: the broker accepts connections a moment before it
    answers requests, and clients started in that window fail on their first call.
    """
    return _probe(bootstrap, timeout_s, lambda admin: admin.list_topics())


def group_coordinator_ok(bootstrap: str, *, timeout_s: float = 5.0) -> bool:
    """True once the broker answers FindCoordinator for a group.

    Why at start-up: Kafka creates ``__consumer_offsets`` on the first FindCoordinator and
    answers COORDINATOR_NOT_AVAILABLE until its partitions have leaders; asking once here
    means the workers' groups (and every client after them) find a coordinator at once.
    """
    return _probe(bootstrap, timeout_s, lambda admin: admin.describe_groups(["resonate-ready"]))


@dataclass(frozen=True)
class SaslSslListener:
    """A SASL_SSL (SCRAM-SHA-512) listener, as production's CLIENT listener.

    ``keystore``: the broker's PKCS12 key and certificate (make-tls.sh's ``kafka.p12``);
    ``users``: name -> password of the SCRAM credentials written at format time.
    """

    port: int
    keystore: Path
    keystore_password: SecretStr
    users: dict[str, SecretStr]


@dataclass(frozen=True)
class BrokerTuning:
    """What the embedded broker may use: heap, partitions, how long topics keep records."""

    heap_mb: int
    partitions: int
    retention_ms: int
    retention_bytes: int
    segment_bytes: int


class KafkaBroker(ChildProcess):
    """Apache Kafka (KRaft, combined roles) as a child process; ``port=0`` picks a free one."""

    name = "Kafka"

    def __init__(
        self,
        *,
        host: str,
        port: int,
        data_dir: Path,
        log_path: Path,
        tuning: BrokerTuning,
        libs: Path | None = None,
        sasl_ssl: SaslSslListener | None = None,
        startup_timeout_s: float = 60.0,
    ) -> None:
        # Controlled shutdown of a combined node takes a few seconds; SIGKILL only after 30.
        super().__init__(log_path=log_path, startup_timeout_s=startup_timeout_s, stop_timeout_s=30)
        self.host = host
        self.port = port or free_port(host)
        self.controller_port = free_port(host)
        self.data_dir = data_dir
        self.tuning = tuning
        self.libs = libs or default_libs_dir()
        self.sasl_ssl = sasl_ssl

    @property
    def bootstrap(self) -> str:
        """``host:port`` of the plaintext listener."""
        return f"{self.host}:{self.port}"

    @property
    def sasl_ssl_bootstrap(self) -> str:
        """``host:port`` of the SASL_SSL listener (only with one configured)."""
        if self.sasl_ssl is None:
            raise RuntimeError("this broker has no SASL_SSL listener")
        return f"{self.host}:{self.sasl_ssl.port}"

    def start(self) -> KafkaBroker:
        """Format fresh storage, start the broker, block until it answers Metadata and
        FindCoordinator. Every start is a new, empty cluster (also after ``kill()``)."""
        java = java_binary()
        libs = check_libs(self.libs)
        for port in (self.port, self.controller_port):
            if port_open(self.host, port):
                raise StartupError(f"port {self.host}:{port} is already in use")
        config_dir = self.data_dir / "config"
        logs = self.data_dir / "data"
        shutil.rmtree(logs, ignore_errors=True)
        config_dir.mkdir(parents=True, exist_ok=True)
        server = config_dir / "server.properties"
        # 0600: the SASL listener's keystore password is in it.
        write_private_text(server, self.server_properties(logs))
        log4j = config_dir / "log4j2.properties"
        write_private_text(log4j, LOG4J2)
        classpath = f"{libs}/*"
        jvm = [str(java), f"-Dlog4j2.configurationFile={log4j}", "-cp", classpath]
        self._format(jvm, server)
        args = [*jvm[:1], *self.jvm_options(), *jvm[1:], "kafka.Kafka", str(server)]
        log.info("starting Kafka %s on %s (log %s)", kafka_version(), self.bootstrap, self.log_path)
        self._launch(args, env=_java_env(), new_session=True)
        self._await_ready(
            lambda: kafka_metadata_ok(self.bootstrap) and group_coordinator_ok(self.bootstrap),
            what=f"Kafka broker on {self.bootstrap}",
        )
        log.info("Kafka ready on %s", self.bootstrap)
        return self

    def jvm_options(self) -> list[str]:
        """Capped heap and the GC settings of Kafka's own start script."""
        heap = f"{self.tuning.heap_mb}m"
        return [
            f"-Xms{heap}",
            f"-Xmx{heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:InitiatingHeapOccupancyPercent=35",
            "-XX:+ExplicitGCInvokesConcurrent",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
        ]

    def server_properties(self, log_dirs: Path) -> str:
        """The broker's configuration (one machine, one replica, bounded retention)."""
        t = self.tuning
        listeners = {
            "PLAINTEXT": f"{self.host}:{self.port}",
            "CONTROLLER": f"{self.host}:{self.controller_port}",
        }
        protocols = {"PLAINTEXT": "PLAINTEXT", "CONTROLLER": "PLAINTEXT"}
        if self.sasl_ssl is not None:
            listeners["CLIENT"] = f"{self.host}:{self.sasl_ssl.port}"
            protocols["CLIENT"] = "SASL_SSL"
        advertised = {k: v for k, v in listeners.items() if k != "CONTROLLER"}
        props: dict[str, object] = {
            "process.roles": "broker,controller",
            "node.id": 1,
            "controller.quorum.voters": f"1@{self.host}:{self.controller_port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listeners": ",".join(f"{k}://{v}" for k, v in listeners.items()),
            "advertised.listeners": ",".join(f"{k}://{v}" for k, v in advertised.items()),
            "listener.security.protocol.map": ",".join(f"{k}:{v}" for k, v in protocols.items()),
            "log.dirs": log_dirs,
            "num.partitions": t.partitions,
            # One broker: one replica of everything, and few partitions for the internal
            # topics (50 offsets partitions would cost start-up time and files for nothing).
            "default.replication.factor": 1,
            "min.insync.replicas": 1,
            "offsets.topic.replication.factor": 1,
            "offsets.topic.num.partitions": 4,
            "transaction.state.log.replication.factor": 1,
            "transaction.state.log.min.isr": 1,
            "transaction.state.log.num.partitions": 4,
            "share.coordinator.state.topic.replication.factor": 1,
            "share.coordinator.state.topic.min.isr": 1,
            # A new group gets its partitions at once instead of after 3 s.
            "group.initial.rebalance.delay.ms": 0,
            # Bounded disk (and page cache) whatever the run's length: every topic keeps
            # at most retention_ms and retention_bytes per partition; compacted ones (Faust's
            # changelogs) are cleaned in small segments.
            "log.retention.ms": t.retention_ms,
            "log.retention.bytes": t.retention_bytes,
            "log.segment.bytes": t.segment_bytes,
            "log.retention.check.interval.ms": 60_000,
            "offsets.retention.minutes": max(1, t.retention_ms // 60_000),
            # Two cores: fewer threads than a server's defaults.
            "num.network.threads": 2,
            "num.io.threads": 4,
            "background.threads": 4,
            "num.recovery.threads.per.data.dir": 1,
            "auto.create.topics.enable": "true",  # as in docker-compose.yml
        }
        if self.sasl_ssl is not None:
            props |= _sasl_ssl_properties(self.sasl_ssl)
        return "".join(f"{k}={v}\n" for k, v in props.items())

    def _format(self, jvm: list[str], server: Path) -> None:
        """``StorageTool format`` with a new cluster id (and the SCRAM users, if any)."""
        # "--cluster-id=ID", not "-t ID": a base64url id may start with "-", which the
        # tool's parser would take for an option (seen: 1 start in 64 failed).
        args = [*jvm, "kafka.tools.StorageTool", "format", f"--cluster-id={new_cluster_id()}"]
        args += [f"--config={server}", "--ignore-formatted"]
        if self.sasl_ssl is not None:
            for user, password in self.sasl_ssl.users.items():
                secret = password.get_secret_value()
                args += ["--add-scram", f"{SCRAM_MECHANISM}=[name={user},password={secret}]"]
        done = subprocess.run(
            args, capture_output=True, text=True, timeout=120, env=_java_env(), check=False
        )
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-20:])
            raise StartupError(f"formatting Kafka storage failed ({done.returncode}):\n{tail}")


def _sasl_ssl_properties(listener: SaslSslListener) -> dict[str, object]:
    password = listener.keystore_password.get_secret_value()
    prefix = "listener.name.client"
    return {
        "sasl.enabled.mechanisms": SCRAM_MECHANISM,
        f"{prefix}.scram-sha-512.sasl.jaas.config": (
            "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        ),
        f"{prefix}.ssl.keystore.type": "PKCS12",
        f"{prefix}.ssl.keystore.location": listener.keystore,
        f"{prefix}.ssl.keystore.password": password,
        f"{prefix}.ssl.key.password": password,
        f"{prefix}.ssl.enabled.protocols": "TLSv1.3,TLSv1.2",
    }


def _java_env() -> dict[str, str]:
    # KAFKA_OPTS / JAVA_TOOL_OPTIONS from the caller's shell would change the JVM behind
    # our back (heap, agents); the embedded broker runs with exactly the options above.
    drop = {"JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS", "KAFKA_OPTS", "KAFKA_HEAP_OPTS"}
    return {k: v for k, v in os.environ.items() if k not in drop}


# Warnings and errors, the line that says the broker started, and failed authentications.
LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.out.ref = out
logger.raft.name = kafka.server.KafkaRaftServer
logger.raft.level = INFO
# "Failed authentication with /ip (... invalid credentials ...)": what an SRE looks for.
logger.auth.name = org.apache.kafka.common.network.Selector
logger.auth.level = INFO
"""


def tuning_from(s: Settings) -> BrokerTuning:
    """The embedded broker's limits from the settings."""
    return BrokerTuning(
        heap_mb=s.kafka_heap_mb,
        partitions=s.partitions,
        retention_ms=s.kafka_retention_ms,
        retention_bytes=s.kafka_retention_bytes,
        # Retention deletes whole closed segments: small ones keep the bound tight.
        segment_bytes=min(16 * 1024 * 1024, s.kafka_retention_bytes),
    )


def embedded_kafka(settings: Settings, *, run_dir: Path, log_dir: Path) -> KafkaBroker:
    """The embedded stack's broker, built from the settings (not started)."""
    s = settings
    return KafkaBroker(
        host=s.host,
        port=s.kafka_port,
        data_dir=run_dir / "kafka",
        log_path=log_dir / "kafka.log",
        tuning=tuning_from(s),
        libs=s.kafka_libs,
    )
