"""Group-less Kafka reading, in one place: a topic's partitions, and a topic read to its end.

Used by the catalog feed (streams), the query API's feed, `resonate dlq`, the bench and the
tests. In ``serving`` because both the workers and the API read this way, and ``serving``
is the lowest layer both may import. Kafka's ListOffsets(latest) answer is the high
watermark, the offset the next record gets: reading "to the end" means reading until every
partition's position reaches it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

from serving.kafka_security import PLAINTEXT, KafkaSecurity

log = logging.getLogger(__name__)


async def partitions_of(
    consumer: Any, topics: Iterable[str], *, timeout_s: float = 0.0
) -> dict[str, set[int]]:
    """Partitions of each of ``topics`` for a started aiokafka consumer without a group,
    waiting up to ``timeout_s`` for topics not created yet (then: those found).

    Why the client's refresh: a consumer that subscribed to nothing starts with metadata of
    no topic, and its public ``topics()`` fetches into a throwaway object, so
    ``partitions_for_topic`` would stay None. ``force_metadata_update`` refreshes the
    client's own metadata (all topics, since it tracks none); the canary in
    tests/unit/test_framework_seams.py fails if aiokafka changes that.
    """
    wanted = list(dict.fromkeys(topics))
    deadline = time.monotonic() + timeout_s
    while True:
        await consumer._client.force_metadata_update()
        found = {t: set(consumer.partitions_for_topic(t) or ()) for t in wanted}
        missing = [t for t, parts in found.items() if not parts]
        if not missing or time.monotonic() >= deadline:
            return {t: parts for t, parts in found.items() if parts}
        log.info("waiting for topics %s", missing)
        await asyncio.sleep(0.5)


async def read_to_end(
    bootstrap: str, topic: str, *, timeout_s: float = 10.0, security: KafkaSecurity = PLAINTEXT
) -> list[Any]:
    """Every record ``topic`` holds now, oldest first per partition."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        request_timeout_ms=30_000,
        **security.aiokafka(),
    )
    await consumer.start()
    try:
        parts = (await partitions_of(consumer, [topic])).get(topic, set())
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        if not tps:
            return []
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        out: list[Any] = []
        left = {tp for tp in tps if await consumer.position(tp) < ends[tp]}
        while left:
            batch = await consumer.getmany(*left, timeout_ms=int(timeout_s * 1000))
            for recs in batch.values():
                out += recs
            # By position, not by the last record's offset: a transactional topic (Faust's
            # exactly_once) ends in commit markers, which advance the position but are never
            # handed out as records.
            done = {tp for tp in left if await consumer.position(tp) >= ends[tp]}
            if not batch and not done:
                raise TimeoutError(f"{topic}: no records within {timeout_s} s before its end")
            left -= done
        return out
    finally:
        await consumer.stop()
