"""Canaries of streams/framework.py: each fails when the private internals a correction of
Faust or aiokafka relies on change, so an upgrade cannot silently disable one."""

from __future__ import annotations

import inspect
import re
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _pinned(name: str) -> str:
    match = re.search(rf'"{re.escape(name)}==([^"]+)"', (ROOT / "pyproject.toml").read_text())
    assert match, f"{name} must be pinned with == in pyproject.toml (streams/framework.py)"
    return match.group(1)


def test_the_patched_frameworks_are_the_pinned_versions() -> None:
    for dist in ("faust-streaming", "aiokafka"):
        assert version(dist) == _pinned(dist), f"{dist}: re-check streams/framework.py"


def test_faust_consumer_internals_the_delivery_guard_patches() -> None:
    from faust.transport import consumer as base
    from faust.transport.drivers import aiokafka as driver

    getmany = base.Consumer.getmany
    assert inspect.isasyncgenfunction(getmany)
    assert list(inspect.signature(getmany).parameters) == ["self", "timeout"]
    assert list(inspect.signature(base.Consumer.on_partitions_revoked).parameters) == [
        "self",
        "revoked",
    ]
    assert inspect.iscoroutinefunction(base.Consumer._add_gap)
    assert list(inspect.signature(base.Consumer._add_gap).parameters) == [
        "self",
        "tp",
        "offset_from",
        "offset_to",
    ]
    # The drain loop's own read offset, which the guard clears before each record.
    assert "_read_offset" in inspect.getsource(base.Consumer.__init__)
    thread = driver.AIOKafkaConsumerThread
    assert inspect.iscoroutinefunction(thread.seek_to_committed)
    assert list(inspect.signature(thread.seek_to_committed).parameters) == ["self"]
    assert callable(thread._ensure_consumer) and inspect.iscoroutinefunction(thread.call_thread)
    assert inspect.iscoroutinefunction(driver.ConsumerThread.seek_wait)
    # Recovery still resumes partitions before it seeks them back: the race the guard covers.
    from faust.tables.recovery import Recovery

    src = inspect.getsource(Recovery.on_recovery_completed)
    assert src.index("resume_partitions") < src.index("perform_seek")


def test_aiokafka_metadata_refresh_used_by_the_group_less_reader() -> None:
    from aiokafka import AIOKafkaConsumer
    from aiokafka.client import AIOKafkaClient

    # Called and awaited by serving/kafka_reader.partitions_of: it must return an awaitable.
    assert "def force_metadata_update(self)" in inspect.getsource(AIOKafkaClient)
    # topics() still fetches into a throwaway cluster object (else the refresh is moot).
    assert "fetch_all_metadata" in inspect.getsource(AIOKafkaConsumer.topics)
    assert "_client" in inspect.getsource(AIOKafkaConsumer.__init__)


def test_the_worker_installs_the_corrections_through_the_seam_only() -> None:
    worker = (ROOT / "streams" / "runtime.py").read_text()
    assert "install_corrections(" in worker and "guard_deliveries" not in worker
    for path in (ROOT / "infra").rglob("*.py"):
        text = path.read_text()
        assert "Consumer.getmany =" not in text and "_build_highwaters =" not in text, path


def test_pymilvus_hits_carry_their_ids_and_distances_as_lists() -> None:
    """serving/milvus_store._pairs reads ``HybridHits.ids`` / ``.distances``; if a pymilvus
    upgrade drops them, the search falls back to one dict per hit (slow, not wrong)."""
    from pymilvus.client.search_result import HybridHits

    from serving.milvus_store import _pairs

    hits = HybridHits(0, 2, ["a%27s", "b"], [0.9, 0.5], [], [], [], "track_id")
    assert list(hits.ids) == ["a%27s", "b"] and list(hits.distances) == [0.9, 0.5]
    assert _pairs(hits) == [("a's", 0.9), ("b", 0.5)]
    # the hit-by-hit path, for a client without those lists
    assert _pairs([{"id": "a%27s", "distance": 0.9}]) == [("a's", 0.9)]
