"""Real components for integration tests: a Tansu broker and a Milvus Lite server.

Both are started once per session on free loopback ports. A component that cannot start
FAILS the tests that need it (with its log tail) rather than skipping them: a skipped
integration test looks green while nothing was tested.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from infra.milvus_lite import MilvusLiteServer
from infra.procs import StartupError, log_tail
from infra.tansu import TansuBroker


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap address ``127.0.0.1:PORT`` of a Tansu broker with memory storage."""
    log_path = tmp_path_factory.mktemp("tansu") / "tansu.log"
    tansu = TansuBroker(host="127.0.0.1", port=0, log_path=log_path)
    try:
        tansu.start()
    except (StartupError, OSError) as exc:
        pytest.fail(f"Tansu broker did not start: {exc}\n--- {log_path} ---\n{log_tail(log_path)}")
    try:
        yield tansu.bootstrap
    finally:
        tansu.stop()


@pytest.fixture(scope="session")
def milvus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URI ``http://127.0.0.1:PORT`` of a Milvus Lite server on a fresh database."""
    folder = tmp_path_factory.mktemp("milvus")
    log_path = folder / "milvus.log"
    server = MilvusLiteServer(
        db_path=folder / "test.db", host="127.0.0.1", port=0, log_path=log_path
    )
    try:
        server.start()
    except (StartupError, OSError) as exc:
        pytest.fail(f"Milvus Lite did not start: {exc}\n--- {log_path} ---\n{log_tail(log_path)}")
    try:
        yield server.uri
    finally:
        server.stop()


@pytest.fixture
def unique() -> str:
    """A short unique string for topic and collection names (tests never share state)."""
    return uuid.uuid4().hex[:8]
