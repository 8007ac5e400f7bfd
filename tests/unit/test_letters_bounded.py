"""A dead letter can always be written and no send waits forever (streams/deadletter.py,
streams/spool.py): the size bound, the deadline, the classification and the spool, with a
stand-in for Faust's topic (the real broker: tests/integration/test_boundaries.py)."""

from __future__ import annotations

import asyncio
import hashlib
import stat
import time
from pathlib import Path
from typing import Any

import faust
import pytest

from schemas.settings import Settings
from streams.deadletter import (
    HEADERS_DROPPED,
    KEY_PREFIX_BYTES,
    LETTER_OVERHEAD,
    ORIGINAL_BYTES,
    ORIGINAL_KEY_BYTES,
    ORIGINAL_SHA256,
    PREFIX_BYTES,
    REASON,
    TRUNCATED,
    DeadLetters,
    Failed,
    InvalidMessage,
    Source,
    fit_letter,
    headers_dict,
    letter_bytes,
    permanent,
)
from streams.metrics import Metrics
from streams.spool import Spool, read_spool


def test_a_letter_that_fits_is_sent_whole() -> None:
    headers = [("own", b"x"), (REASON, b"invalid")]
    assert fit_letter(b"k", b"v" * 100, headers, max_bytes=64 * 1024) == (
        b"k",
        b"v" * 100,
        headers,
    )


@pytest.mark.parametrize("size", [1_000_000 - LETTER_OVERHEAD, 1_000_000, 8 * 1024 * 1024])
def test_an_oversized_original_travels_as_a_described_prefix(size: int) -> None:
    value = bytes(range(256)) * (size // 256)
    key = b"k" * 10_000
    headers = [(f"own{i}", b"h" * 100) for i in range(50)] + [(REASON, b"too-large")]
    k, v, h = fit_letter(key, value, headers, max_bytes=1_000_000)
    assert letter_bytes(k, v, h) <= 1_000_000 - LETTER_OVERHEAD
    hd = headers_dict(h)
    assert v == value[:PREFIX_BYTES] and k == key[:KEY_PREFIX_BYTES]
    assert hd[TRUNCATED] == "1" and hd[ORIGINAL_BYTES] == str(len(value))
    assert hd[ORIGINAL_SHA256] == hashlib.sha256(value).hexdigest()
    assert hd[ORIGINAL_KEY_BYTES] == "10000" and hd[HEADERS_DROPPED] == "50"
    assert hd[REASON] == "too-large"  # ours are kept


def test_permanent_failures_are_told_from_passing_ones() -> None:
    from aiokafka.errors import (
        KafkaTimeoutError,
        MessageSizeTooLargeError,
        TopicAuthorizationFailedError,
    )

    assert permanent(MessageSizeTooLargeError()) and permanent(TopicAuthorizationFailedError())
    assert not permanent(KafkaTimeoutError()) and not permanent(ConnectionError())


class _Topic:
    """Faust's topic, as far as DeadLetters uses it: send -> a future of the broker's ack."""

    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour
        self.sent: list[tuple[Any, bytes]] = []

    async def send(self, *, key: Any, value: bytes, headers: Any) -> asyncio.Future[None]:
        from aiokafka.errors import MessageSizeTooLargeError

        if self.behaviour == "too-large":
            raise MessageSizeTooLargeError("the message is 2000000 bytes")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.behaviour == "ok":
            self.sent.append((key, value))
            fut.set_result(None)
        # "silent": never acknowledged (a broker that refuses without saying so)
        return fut


def _letters(tmp_path: Path, behaviour: str, **fields: Any) -> tuple[DeadLetters, _Topic, Metrics]:
    s = Settings(run_dir=tmp_path, **fields)
    m = Metrics()
    letters = DeadLetters(
        app=faust.App("bounded-test"),
        settings=s,
        metrics=m,
        spool=Spool(folder=tmp_path / "spool", max_bytes=s.spool_max_bytes),
    )
    topic = _Topic(behaviour)
    letters.topic = lambda name: topic  # type: ignore[method-assign,assignment,return-value]
    return letters, topic, m


def _failed(value: bytes = b"{}") -> Failed:
    src = Source(topic="interactions", partition=1, offset=9, key=b"u", value=value)
    return Failed(src, "invalid", InvalidMessage("message: Invalid JSON"))


async def test_a_letter_the_broker_acknowledges_is_not_spooled(tmp_path: Path) -> None:
    letters, topic, m = _letters(tmp_path, "ok")
    await letters.dead_letter_many([_failed()], role="interactions")
    assert len(topic.sent) == 1 and read_spool(tmp_path / "spool") == []


async def test_a_refusal_waiting_cannot_cure_is_spooled_at_once(tmp_path: Path) -> None:
    letters, _, m = _letters(tmp_path, "too-large", send_deadline_s=60)
    t0 = time.monotonic()
    await letters.dead_letter_many([_failed(b"x" * 100)], role="interactions")
    assert time.monotonic() - t0 < 2  # classified, not retried for a minute
    (item,) = read_spool(tmp_path / "spool")
    assert item.topic == "interactions.dlq" and item.value == b"x" * 100
    assert item.error.startswith("MessageSizeTooLargeError")
    assert headers_dict(item.headers)[REASON] == "invalid"
    assert (
        m.registry.get_sample_value(
            "resonate_dead_letters_spooled_total",
            {"topic": "interactions.dlq", "error": "MessageSizeTooLargeError"},
        )
        == 1
    )
    for path in (tmp_path / "spool").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "spool").stat().st_mode) == 0o700


async def test_an_unacknowledged_letter_is_spooled_at_the_deadline(tmp_path: Path) -> None:
    letters, _, m = _letters(tmp_path, "silent", send_deadline_s=0.5)
    t0 = time.monotonic()
    await letters.dead_letter_many([_failed()], role="interactions")
    assert 0.4 < time.monotonic() - t0 < 5
    assert len(read_spool(tmp_path / "spool")) == 1
    assert m.registry.get_sample_value("resonate_agent_waiting", {"on": "send"}) == 0


async def test_a_full_spool_makes_the_send_wait_and_says_so(tmp_path: Path) -> None:
    letters, _, m = _letters(
        tmp_path, "too-large", send_deadline_s=0.2, spool_max_bytes=1024 * 1024
    )
    letters._spool.max_bytes = 10  # nothing fits
    task = asyncio.ensure_future(letters.dead_letter_many([_failed()], role="interactions"))
    await asyncio.sleep(0.3)
    assert not task.done()
    assert m.registry.get_sample_value("resonate_agent_waiting", {"on": "send"}) == 1
    letters._spool.max_bytes = 1 << 20  # an operator made room
    await asyncio.wait_for(task, 15)
    assert len(read_spool(tmp_path / "spool")) == 1


async def test_resonate_dlq_lists_cut_and_spooled_letters_and_refuses_to_republish_a_cut_one(
    tmp_path: Path,
) -> None:
    from types import SimpleNamespace

    from infra.dlq import CutLetters, _letter, render, republish, spooled_letters

    letters, _, _ = _letters(tmp_path, "too-large")
    await letters.dead_letter_many([_failed(b"y" * 2_000_000)], role="interactions")
    (spooled,) = spooled_letters(tmp_path / "spool", "interactions.dlq")
    assert spooled.spooled and spooled.ref == "spool:0"
    assert spooled.truncated and spooled.original_bytes == 2_000_000
    assert spooled.source == "interactions[1]@9"
    shown = render([spooled], as_json=False)
    assert "SPOOLED" in shown and "CUT: prefix of 2000000 bytes" in shown
    whole = _letter(
        "interactions.dlq",
        SimpleNamespace(partition=0, offset=4, key=b"u", value=b"{}", headers=[(REASON, b"x")]),
    )
    assert not whole.truncated
    with pytest.raises(CutLetters, match=r"spool:0 \(2000000 bytes, at interactions\[1\]@9\)"):
        await republish("127.0.0.1:1", [whole, spooled])  # refused before any connection


def test_the_record_limit_is_the_smallest_topic_limit_and_refuses_what_cannot_fit() -> None:
    from serving.kafka_topics import TopicError, record_limit

    assert record_limit(1_000_000, {}, floor=80_000) == 1_000_000
    assert record_limit(1_000_000, {"a.dlq": 1_048_588, "b.retry": 200_000}, floor=80_000) == (
        200_000
    )
    with pytest.raises(TopicError, match=r"b\.dlq takes only 50000"):
        record_limit(1_000_000, {"a": 900_000, "b.dlq": 50_000}, floor=80_000)
