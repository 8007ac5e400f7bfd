"""The lag collector's gauges from offset snapshots (no broker: see the integration test)."""

from __future__ import annotations

from typing import Any

import pytest

from infra.lag import LagCollector, LagError, LagReader, PartitionLag
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


def test_records_held_are_reported_and_warned_about_once(caplog: Any) -> None:
    m = Metrics()
    c = LagCollector(
        reader=LagReader(bootstrap="127.0.0.1:1", group_id="g"), metrics=m, records_warn=100
    )
    c.observe([PartitionLag("t", 0, committed=5, end=60), PartitionLag("t", 1, -1, end=30)])
    assert m.registry.get_sample_value("resonate_input_records_held") == 90
    assert "embedded Tansu" not in caplog.text
    c.observe([PartitionLag("t", 0, committed=5, end=80), PartitionLag("t", 1, -1, end=30)])
    c.observe([PartitionLag("t", 0, committed=5, end=90), PartitionLag("t", 1, -1, end=30)])
    assert caplog.text.count("embedded Tansu") == 1


async def test_an_unread_last_batch_fails_strict_callers_and_warns_the_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from streams import offsets

    async def nothing_read(*args: object, **kwargs: object) -> dict[object, int]:
        return {}  # the probe saw no record of any partition in time

    monkeypatch.setattr(offsets, "_last_offsets", nothing_read)
    reported = {("t", 0): 889}
    assert await offsets.correct_end_offsets("b:1", reported) == {("t", 0): 889}
    with pytest.raises(TimeoutError, match=r"t\[0\]"):
        await offsets.correct_end_offsets("b:1", reported, strict=True)
