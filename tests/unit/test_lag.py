"""The lag collector's gauges from offset snapshots (no broker: see the integration test)."""

from __future__ import annotations

from streams.lag import LagCollector, LagError, LagReader, PartitionLag
from streams.metrics import Metrics


def _gauge(m: Metrics, name: str, topic: str, partition: int) -> float | None:
    return m.registry.get_sample_value(name, {"topic": topic, "partition": str(partition)})


def test_lag_seconds_counts_from_when_the_partition_was_last_caught_up() -> None:
    m = Metrics()
    c = LagCollector(reader=LagReader(bootstrap="127.0.0.1:1", group_id="g"), metrics=m)
    c.observe([PartitionLag("t", 0, committed=5, end=5)], now=100.0)
    assert _gauge(m, "resonate_consumer_lag_seconds", "t", 0) == 0.0
    c.observe([PartitionLag("t", 0, committed=5, end=9)], now=103.0)
    assert _gauge(m, "resonate_consumer_lag_messages", "t", 0) == 4
    assert _gauge(m, "resonate_consumer_lag_seconds", "t", 0) == 3.0  # behind since t=100
    c.observe([PartitionLag("t", 0, committed=8, end=12)], now=110.0)
    assert _gauge(m, "resonate_consumer_lag_seconds", "t", 0) == 10.0  # never caught up
    c.observe([PartitionLag("t", 0, committed=12, end=12)], now=111.0)
    assert _gauge(m, "resonate_consumer_lag_seconds", "t", 0) == 0.0
    assert _gauge(m, "resonate_consumer_lag_messages", "t", 0) == 0


def test_uncommitted_partition_lag_is_its_end_offset() -> None:
    assert PartitionLag("t", 1, committed=-1, end=7).lag == 7
    assert PartitionLag("t", 1, committed=9, end=7).lag == 0  # never negative


def test_unreachable_broker_is_counted_not_raised() -> None:
    m = Metrics()
    reader = LagReader(bootstrap="127.0.0.1:1", group_id="g", timeout_s=0.5)
    c = LagCollector(reader=reader, metrics=m)
    assert c.collect_once() == []  # not opened: LagError inside, counted
    assert m.registry.get_sample_value("resonate_lag_collections_total", {"outcome": "error"}) == 1
    try:
        with reader:
            raise AssertionError("a closed port must not connect")
    except LagError as exc:
        assert "127.0.0.1:1" in str(exc)


def test_a_partition_that_does_not_move_with_records_waiting_is_stalled() -> None:
    m = Metrics()
    c = LagCollector(
        reader=LagReader(bootstrap="127.0.0.1:1", group_id="g"), metrics=m, stall_after_s=45
    )
    m.set_assigned(True)
    # A steady backlog that moves is not a stall, however long it lasts.
    for i, now in enumerate(range(0, 300, 5)):
        c.observe([PartitionLag("t", 0, committed=10 * i, end=10 * i + 50)], now=float(now))
    assert _gauge(m, "resonate_partition_stalled_seconds", "t", 0) == 0.0
    assert m.registry.get_sample_value("resonate_worker_ready") == 1
    # Stuck at offset 600 with records behind it.
    for now in range(300, 350, 5):
        c.observe([PartitionLag("t", 0, committed=600, end=700)], now=float(now))
    assert _gauge(m, "resonate_partition_stalled_seconds", "t", 0) == 45.0
    assert [(p.committed, s) for p, s in c.stalled] == [(600, 45.0)]
    assert m.registry.get_sample_value("resonate_worker_ready") == 0
    # It moves again: ready again.
    c.observe([PartitionLag("t", 0, committed=601, end=700)], now=350.0)
    assert _gauge(m, "resonate_partition_stalled_seconds", "t", 0) == 0.0
    assert m.registry.get_sample_value("resonate_worker_ready") == 1
    # Caught up is never stalled, even when nothing moves.
    for now in range(355, 500, 5):
        c.observe([PartitionLag("t", 0, committed=700, end=700)], now=float(now))
    assert not c.stalled


def test_status_names_the_stalled_partition_its_offset_and_what_is_retried() -> None:
    from infra.status import StatusReport

    text = StatusReport(
        lag=[PartitionLag("interactions", 1, committed=600, end=700)],
        stalled={"interactions/1": 95.0},
        waiting=["send"],
        send_errors={"interactions.dlq TopicAuthorizationFailedError": 12},
    ).render()
    assert "interactions/1: offset 600 in hand for 95 s; agents waiting on: send" in text
    assert "retrying a write: interactions.dlq TopicAuthorizationFailedError (12" in text
