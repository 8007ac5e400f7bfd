"""Exact end offsets, on Kafka and on Tansu alike.

Tansu answers ListOffsets(latest) with the *last batch's base offset + 1*: a partition
holding 1,000 records written in small batches reports 889. Anything that reads "up to the
end" (Faust's changelog recovery, the catalog feed's catch-up) would stop short of, and
later trip over, the records of the last batch. Reading the last batch itself gives the
true end: fetch from ``reported - 1`` and take the highest offset seen + 1. On Kafka that
is the record at ``reported - 1``, so the answer is unchanged there; on Tansu it is the
whole last batch. This keeps producers free to batch (Tansu's cost is per batch it holds).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from serving.kafka_security import PLAINTEXT, KafkaSecurity

log = logging.getLogger(__name__)


async def true_end_offsets(
    consumer: Any,
    tps: Iterable[Any],
    *,
    bootstrap: str | None = None,
    timeout_s: float = 10.0,
    security: KafkaSecurity = PLAINTEXT,
) -> dict[Any, int]:
    """End offset (next offset to be written) of each partition of a started aiokafka
    consumer, read past the last batch; the consumer's own positions are not touched."""
    tps = list(tps)
    if not tps:
        return {}
    reported: Mapping[Any, int] = await consumer.end_offsets(tps)
    return await correct_end_offsets(
        bootstrap or _bootstrap_of(consumer), reported, timeout_s=timeout_s, security=security
    )


async def read_to_end(
    bootstrap: str, topic: str, *, timeout_s: float = 10.0, security: KafkaSecurity = PLAINTEXT
) -> list[Any]:
    """Every record of ``topic`` up to its true end, oldest first per partition, read with a
    group-less consumer of its own (dead letters, changelogs)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        request_timeout_ms=30_000,
        **security.aiokafka(),
    )
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic)
        if parts is None:
            await consumer.force_metadata_update()
            parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        if not tps:
            return []
        consumer.assign(tps)
        ends = await true_end_offsets(
            consumer, tps, bootstrap=bootstrap, timeout_s=timeout_s, security=security
        )
        await consumer.seek_to_beginning(*tps)
        out: list[Any] = []
        left = {tp for tp in tps if ends[tp] > 0}
        while left:
            batch = await consumer.getmany(*left, timeout_ms=int(timeout_s * 1000))
            if not batch:
                raise TimeoutError(f"{topic}: no records within {timeout_s} s before its end")
            for tp, recs in batch.items():
                out += recs
                if recs[-1].offset + 1 >= ends[tp]:
                    left.discard(tp)
        return out
    finally:
        await consumer.stop()


async def correct_end_offsets(
    bootstrap: str,
    reported: Mapping[Any, int | None],
    *,
    timeout_s: float = 10.0,
    security: KafkaSecurity = PLAINTEXT,
    strict: bool = False,
) -> dict[Any, int]:
    """``reported`` end offsets (ListOffsets answers) corrected by reading each last batch
    with a short-lived consumer of its own. Keys may be any (topic, partition) tuples.

    ``strict``: raise TimeoutError when a partition's last batch was not read in time,
    instead of keeping its reported (possibly short) end. Table recovery needs that: a
    short highwater recovers a state older than the committed input offsets, and the
    events in between are lost from it."""
    from aiokafka import TopicPartition

    ends = {tp: int(v or 0) for tp, v in reported.items()}
    probe = {TopicPartition(tp[0], tp[1]): v for tp, v in ends.items() if v > 0}
    if not probe:
        return ends
    last = await _last_offsets(
        bootstrap, list(probe), probe, timeout_s=timeout_s, security=security
    )
    unread = [f"{tp.topic}[{tp.partition}]" for tp in probe if tp not in last]
    if strict and unread:
        raise TimeoutError(f"last batch of {unread} not read within {timeout_s:.0f} s")
    if unread:
        log.warning("last batch of %s not read in time; keeping the reported end", unread)
    out: dict[Any, int] = {}
    short: dict[str, tuple[int, int]] = {}
    for tp, v in ends.items():
        true = max(v, last.get(TopicPartition(tp[0], tp[1]), -1) + 1)
        out[tp] = true
        if true > v:
            short[f"{tp[0]}[{tp[1]}]"] = (v, true)
    if short:
        log.info("end offsets corrected past the last batch (reported, true): %s", short)
    return out


def _bootstrap_of(consumer: Any) -> str:
    servers = consumer._client._bootstrap_servers
    return servers if isinstance(servers, str) else ",".join(servers)


async def _last_offsets(
    bootstrap: str,
    tps: list[Any],
    reported: Mapping[Any, int],
    *,
    timeout_s: float,
    security: KafkaSecurity,
) -> dict[Any, int]:
    from aiokafka import AIOKafkaConsumer

    probe = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        group_id=None,
        fetch_max_wait_ms=50,
        **security.aiokafka(),
    )
    await probe.start()
    try:
        probe.assign(tps)
        for tp in tps:
            probe.seek(tp, reported[tp] - 1)
        last: dict[Any, int] = {}
        pending = set(tps)
        deadline = time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline:
            batch = await probe.getmany(timeout_ms=200)
            for tp, records in batch.items():
                if records:
                    last[tp] = max(last.get(tp, -1), records[-1].offset)
                    pending.discard(tp)
        # Partitions that never answer (only control records at the end) keep the reported
        # offset. Drain what the fetcher already holds so the last batch is read whole.
        batch = await probe.getmany(timeout_ms=50)
        for tp, records in batch.items():
            if records:
                last[tp] = max(last.get(tp, -1), records[-1].offset)
        return last
    finally:
        await probe.stop()
