"""The delivery guard: no input record is skipped, whatever order the fetcher hands them in."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from streams.delivery import FetchVerdict, OffsetGuard, _guarded_getmany


def test_records_in_order_are_delivered_and_advance_the_partition() -> None:
    g = OffsetGuard()
    g.seeked({"p0": 10})
    assert [g.admit("p0", o) for o in (10, 11, 12)] == [FetchVerdict.DELIVER] * 3
    assert g.expected("p0") == 13


def test_a_partition_never_sought_accepts_its_first_record() -> None:
    g = OffsetGuard()
    assert g.admit("p0", 7) is FetchVerdict.DELIVER
    assert g.admit("p0", 9) is FetchVerdict.REWIND


def test_a_record_below_the_expected_offset_was_delivered_already() -> None:
    g = OffsetGuard()
    g.seeked({"p0": 10})
    g.admit("p0", 10)
    assert g.admit("p0", 10) is FetchVerdict.DROP
    assert g.admit("p0", 3) is FetchVerdict.DROP
    assert g.expected("p0") == 11


def test_a_jump_is_re_read_and_only_a_confirmed_one_is_a_gap() -> None:
    g = OffsetGuard()
    g.seeked({"p0": 46})
    # Stale records from before the seek: re-read from 46 instead of skipping 46..57.
    assert g.admit("p0", 58) is FetchVerdict.REWIND
    assert g.expected("p0") == 46
    # The re-read brings 46: the jump was not real.
    assert g.admit("p0", 46) is FetchVerdict.DELIVER
    # A real hole (a transaction marker at 47): re-read once, then accepted.
    assert g.admit("p0", 48) is FetchVerdict.REWIND
    assert g.admit("p0", 48) is FetchVerdict.GAP
    assert g.expected("p0") == 49


def test_a_seek_resets_every_partition_and_forgets_rewinds() -> None:
    g = OffsetGuard()
    g.seeked({"p0": 5, "p1": 0})
    assert g.admit("p0", 9) is FetchVerdict.REWIND
    g.seeked({"p0": 5})
    assert g.expected("p1") is None
    # After a new seek the same jump must be re-read again, not taken for a gap.
    assert g.admit("p0", 9) is FetchVerdict.REWIND


def test_records_fetched_before_a_seek_are_judged_by_its_target() -> None:
    g = OffsetGuard()
    g.seeked({"p0": 0})
    for o in range(6):  # delivered, then lost in a rebalance with the queues cleared
        g.admit("p0", o)
    g.seeked({"p0": 4})  # back to committed 4
    # A record still in hand from before, at exactly the target, is the right one.
    assert g.admit("p0", 4) is FetchVerdict.DELIVER
    assert g.admit("p0", 2) is FetchVerdict.DROP  # before committed: done
    assert g.admit("p0", 6) is FetchVerdict.REWIND  # 5 is not delivered again yet


def test_revoked_partitions_are_forgotten() -> None:
    g = OffsetGuard()
    g.seeked({"p0": 5, "p1": 3})
    g.forget(["p0"])
    assert g.expected("p0") is None and g.expected("p1") == 3


@dataclass
class FakeConsumer:
    """What the guarded getmany touches on Faust's consumer."""

    batch: list[tuple[str, int]]
    read_offsets: dict[str, int | None] = field(default_factory=dict)
    sought: list[dict[str, int]] = field(default_factory=list)
    gaps: list[tuple[str, int, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.app = SimpleNamespace(topics=SimpleNamespace(acks_enabled_for=lambda t: t != "log"))
        self._read_offset = self.read_offsets
        self._thread = SimpleNamespace(seek_wait=self._seek_wait)
        self._resonate_guard = OffsetGuard()

    async def _seek_wait(self, targets: dict[str, int]) -> None:
        self.sought.append(targets)

    async def _add_gap(self, tp: str, start: int, end: int) -> None:
        self.gaps.append((tp, start, end))


async def _fetch(self: FakeConsumer, timeout: float) -> AsyncGenerator[tuple[str, Any], None]:
    for tp, offset in self.batch:
        topic = "log" if tp == "log" else "input"
        yield tp, SimpleNamespace(offset=offset, topic=topic)


def _deliver(consumer: FakeConsumer, rereads: list[str] | None = None) -> list[tuple[str, int]]:
    async def run() -> list[tuple[str, int]]:
        count = rereads.append if rereads is not None else (lambda topic: None)
        getmany = _guarded_getmany(_fetch, count)  # type: ignore[arg-type]
        return [(tp, m.offset) async for tp, m in getmany(consumer, 1.0)]

    return asyncio.run(run())


def test_the_guarded_fetch_re_reads_a_skipped_range_and_goes_on_with_other_partitions() -> None:
    c = FakeConsumer(batch=[("in", 58), ("in", 59), ("other", 3), ("log", 100), ("log", 140)])
    c._resonate_guard.seeked({"in": 46, "other": 3})
    rereads: list[str] = []
    out = _deliver(c, rereads)
    # 58 and 59 are not delivered; the partition is sought back to 46. Changelog-like
    # topics (no acks) pass untouched, holes and all.
    assert out == [("other", 3), ("log", 100), ("log", 140)]
    assert c.sought == [{"in": 46}]
    assert rereads == ["input"]  # counted once per re-read, not per skipped record
    # The drain loop's own read offset is cleared, so it cannot drop or gap-fill.
    assert c.read_offsets == {"other": None}


def test_the_guarded_fetch_marks_only_a_confirmed_hole_as_acked() -> None:
    c = FakeConsumer(batch=[("in", 48)])
    c._resonate_guard.seeked({"in": 47})
    assert _deliver(c) == []
    c.batch = [("in", 48), ("in", 49)]
    assert _deliver(c) == [("in", 48), ("in", 49)]
    assert c.gaps == [("in", 47, 47)]
