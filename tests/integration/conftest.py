"""Real components for integration tests: an Apache Kafka broker, a Milvus Lite server, and the
whole embedded stack.

Broker and Milvus are started once per session on free loopback ports. A component that
cannot start FAILS the tests that need it (with its log tail) rather than skipping them: a
skipped integration test looks green while nothing was tested.

The embedded stack is started once per module that asks for ``stack`` (or ``bus``); the
module says how with a ``stack_options`` fixture (Settings fields, see
``events.stack_settings``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from infra.demo import Bus
from infra.kafka_broker import embedded_kafka
from infra.milvus_lite import MilvusLiteServer
from infra.milvus_server import MilvusStandaloneServer, milvus_server_version
from infra.procs import ChildProcess, StartupError, log_tail
from infra.stack import PROJECT_ROOT, EmbeddedStack
from schemas.settings import Settings
from tests.integration.events import stack_settings


@contextmanager
def _running(component: ChildProcess, what: str) -> Iterator[None]:
    """``component`` started for the block, or the test failed with its log tail."""
    log_path = component.log_path
    try:
        component.start()
    except (StartupError, OSError) as exc:
        pytest.fail(f"{what} did not start: {exc}\n--- {log_path} ---\n{log_tail(log_path)}")
    try:
        yield
    finally:
        component.stop()


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap address ``127.0.0.1:PORT`` of an Apache Kafka broker on fresh storage, tuned
    as the embedded stack's (``embedded_kafka`` with the default settings)."""
    folder = tmp_path_factory.mktemp("kafka")
    kafka = embedded_kafka(Settings(), run_dir=folder, log_dir=folder)
    with _running(kafka, "Kafka broker"):
        yield kafka.bootstrap


@pytest.fixture(scope="session")
def milvus(milvus_target: MilvusTarget) -> str:
    """URI ``http://127.0.0.1:PORT`` of the Milvus under test (Lite, then the server)."""
    return milvus_target.uri


@dataclass(frozen=True)
class MilvusTarget:
    """A running Milvus and the ``TrackStore`` options that fit it."""

    mode: str  # "lite" or "server"
    uri: str
    store_options: dict[str, Any]


@pytest.fixture(scope="session", params=["lite", "server"])
def milvus_target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MilvusTarget]:
    """Milvus Lite (FLAT, INVERTED) and the Milvus 2.3 standalone server from the ``milvus``
    wheel (HNSW, STL_SORT): every store test runs against both."""
    folder = tmp_path_factory.mktemp(f"milvus-{request.param}")
    server: MilvusLiteServer | MilvusStandaloneServer
    if request.param == "lite":
        server = MilvusLiteServer(
            db_path=folder / "test.db", host="127.0.0.1", port=0, log_path=folder / "milvus.log"
        )
        options: dict[str, Any] = {"index_type": "FLAT", "scalar_index": "INVERTED"}
    else:
        server = MilvusStandaloneServer(
            data_dir=folder / "data",
            bin_cache=PROJECT_ROOT / "run" / "cache" / f"milvus-{milvus_server_version()}",
            host="127.0.0.1",
            port=0,
            log_path=folder / "milvus.log",
        )
        options = {
            "index_type": "HNSW",
            "hnsw_m": 16,
            "hnsw_ef_construction": 200,
            "hnsw_ef": 128,
            "scalar_index": "STL_SORT",
        }
    with _running(server, f"Milvus {request.param}"):
        yield MilvusTarget(mode=request.param, uri=server.uri, store_options=options)


@pytest.fixture
def unique() -> str:
    """A short unique string for topic and collection names (tests never share state)."""
    return uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, weights_path: Path, stack_options: dict[str, Any]
) -> Iterator[EmbeddedStack]:
    """The embedded stack of this module, on fresh topics and collection."""
    settings = stack_settings(tmp_path_factory.mktemp("stack"), weights_path, **stack_options)
    with EmbeddedStack(settings=settings) as st:
        yield st


@pytest.fixture(scope="module")
def bus(stack: EmbeddedStack) -> Iterator[Bus]:
    """A platform's producer and recommendations consumer on this module's stack."""
    b = Bus(stack.settings)
    yield b
    b.close()
