"""One message must never stop the stream, on the real stack (Apache Kafka, a Faust worker).

As an attacker would: interactions just under, at and over the declared size, a ~1 MB one
the broker accepts, a huge key, many headers, and a dead-letter topic that refuses writes.
After each, valid plays sent behind the bad ones are answered within seconds, and the books
balance: produced = applied + duplicate + dead-lettered (+ spooled).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from kafka import KafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from infra.demo import Bus
from infra.dlq import read_letters, spooled_letters
from infra.stack import EmbeddedStack
from schemas.events import Interaction
from streams.deadletter import REASON, headers_dict
from tests.integration.events import answers, poll

LIMIT = 8 * 1024  # max_event_bytes of this stack: small, so the boundaries are cheap


@pytest.fixture(scope="module")
def stack_options() -> dict[str, Any]:
    return {"workers": 1, "max_event_bytes": LIMIT, "send_deadline_s": 5.0}


@pytest.fixture(scope="module")
def producer(stack: EmbeddedStack) -> Any:
    # A producer that sends what the broker accepts (1 MB), not what we declare.
    p = KafkaProducer(
        bootstrap_servers=stack.settings.kafka_bootstrap, acks="all", max_request_size=1_040_000
    )
    yield p
    p.close(5)


def _play(user: str) -> tuple[str, bytes]:
    ev = Interaction.model_validate(
        {
            "event_id": uuid.uuid4().hex,
            "type": "play",
            "user_id": user,
            "track_id": f"track-{uuid.uuid4().hex[:4]}",
            "occurred_at": datetime.now(UTC),
        }
    )
    return ev.event_id, ev.model_dump_json().encode()


def _counts(stack: EmbeddedStack) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(stack.workers[0].metrics_text()):
        for s in family.samples:
            if s.name == "resonate_events_total" and s.labels.get("topic") == "interactions":
                out[s.labels["outcome"]] = out.get(s.labels["outcome"], 0.0) + s.value
            elif s.name == "resonate_dead_letters_spooled_total":
                out["spooled"] = out.get("spooled", 0.0) + s.value
    return out


def _books_balance(stack: EmbeddedStack, before: dict[str, float], produced: int) -> None:
    """Every message produced since ``before`` is counted under exactly one outcome."""
    deadline = time.monotonic() + 60
    while True:
        now = _counts(stack)
        seen = {k: now.get(k, 0.0) - before.get(k, 0.0) for k in now if k != "spooled"}
        if sum(seen.values()) >= produced or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert sum(seen.values()) == produced, seen


def _send_bad_then_good(
    stack: EmbeddedStack, bus: Bus, producer: Any, bad: list[dict[str, Any]]
) -> dict[str, Any]:
    """Each bad record, then a valid play on the SAME partition right behind it; every valid
    play must be answered within seconds (the partition was not stopped)."""
    s = stack.settings
    topic = s.topic(s.interactions_topic)
    good: set[str] = set()
    for record in bad:
        partition = producer.send(topic, **record).get(timeout=30).partition
        user = f"behind-{uuid.uuid4().hex[:8]}"
        eid, value = _play(user)
        producer.send(topic, key=user.encode(), value=value, partition=partition)
        good.add(eid)
    producer.flush(30)
    t0 = time.monotonic()
    got = answers(bus, good, timeout_s=30)
    return {"answered": len(got), "seconds": time.monotonic() - t0}


def test_sizes_just_under_at_and_over_the_limit(
    stack: EmbeddedStack, bus: Bus, producer: Any
) -> None:
    before = _counts(stack)
    eid, body = _play("edge")
    key = b"edge"
    pad = LIMIT - len(body) - len(key) - len("pad")
    cases = [
        {"key": key, "value": body, "headers": [("pad", b"x" * (pad - 1))]},  # under: applied
        {"key": key, "value": body, "headers": [("pad", b"x" * pad)]},  # at: applied (dup id)
        {"key": key, "value": body, "headers": [("pad", b"x" * (pad + 1))]},  # over: too-large
    ]
    result = _send_bad_then_good(stack, bus, producer, cases)
    assert result["answered"] == 3
    now = _counts(stack)
    assert now.get("too-large", 0) - before.get("too-large", 0) == 1
    assert now.get("duplicate", 0) - before.get("duplicate", 0) >= 1  # the same event id
    _books_balance(stack, before, produced=6)


def test_a_megabyte_a_huge_key_and_many_headers_stop_nobody(
    stack: EmbeddedStack, bus: Bus, producer: Any
) -> None:
    before = _counts(stack)
    _, body = _play("big")
    bad = [
        {"key": b"big", "value": b"{" + b"x" * 1_000_000},  # the broker takes it; we do not
        {"key": b"k" * 200_000, "value": body},
        {"key": b"hdrs", "value": body, "headers": [(f"h{i}", b"v") for i in range(3000)]},
    ]
    result = _send_bad_then_good(stack, bus, producer, bad)
    assert result["answered"] == 3 and result["seconds"] < 20, result
    _books_balance(stack, before, produced=6)
    s = stack.settings

    def cut_letters() -> list[Any]:
        # Counted when taken in, written a moment later: read until the letter is there.
        letters = asyncio.run(
            read_letters(s.kafka_bootstrap, s.dead_letter_topic(s.interactions_topic))
        )
        return [lt for lt in letters if lt.truncated and lt.original_bytes == 1_000_001]

    big = poll("the cut dead letter of the 1 MB record", cut_letters, timeout_s=30)
    assert big[0].reason == "too-large" and len(big[0].value) <= 4096
    assert headers_dict(big[0].headers)[REASON] == "too-large"


def test_a_dead_letter_topic_that_refuses_writes_does_not_stop_the_stream(
    stack: EmbeddedStack, bus: Bus, producer: Any
) -> None:
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

    s = stack.settings
    dlq = s.dead_letter_topic(s.interactions_topic)
    admin = KafkaAdminClient(bootstrap_servers=s.kafka_bootstrap)
    try:
        # The broker now refuses every letter of this topic (RecordTooLarge): as a topic
        # whose writes are not authorised or over quota would, it never takes them.
        admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, dlq, configs={"max.message.bytes": "64"})]
        )
        before = _counts(stack)
        bad = [{"key": b"refused", "value": b"not json at all"}]
        result = _send_bad_then_good(stack, bus, producer, bad)
        assert result["answered"] == 1 and result["seconds"] < 20, result
        _books_balance(stack, before, produced=2)
        # Counted when taken in, spooled a moment later: read until the letter is there.
        poll(
            "the refused letter in the spool",
            lambda: any(
                lt.value == b"not json at all" for lt in spooled_letters(s.run_dir / "spool", dlq)
            ),
            timeout_s=30,
        )
        poll(
            "the spooled counter",
            lambda: _counts(stack).get("spooled", 0) > before.get("spooled", 0),
            timeout_s=30,
        )
    finally:
        admin.alter_configs(
            [
                ConfigResource(
                    ConfigResourceType.TOPIC, dlq, configs={"max.message.bytes": "1048588"}
                )
            ]
        )
        admin.close()


def test_a_burst_of_ten_times_the_sustained_rate_leaves_every_partition_moving(
    stack: EmbeddedStack, bus: Bus, producer: Any
) -> None:
    """2,000 plays of 2,000 listeners sent at once: over ten times the rate one worker
    sustains within its latency objective (200/s, docs/performance.md). Every play, on every
    partition, is answered, and each is counted once; the backlog drains, nothing is shed."""
    s = stack.settings
    topic = s.topic(s.interactions_topic)
    before = _counts(stack)
    sent = []
    t0 = time.monotonic()
    for _ in range(2000):
        user = f"burst-{uuid.uuid4().hex[:8]}"
        eid, value = _play(user)
        sent.append((eid, producer.send(topic, key=user.encode(), value=value)))
    producer.flush(60)
    burst_s = time.monotonic() - t0
    partition = {eid: fut.get(timeout=30).partition for eid, fut in sent}
    assert burst_s < 2000 / (10 * 200), f"the burst took {burst_s:.1f} s: not 10x"
    got = answers(bus, set(partition), timeout_s=180)
    assert {partition[eid] for eid in got} == set(range(s.partitions))
    _books_balance(stack, before, produced=2000)
