"""Every correction of Faust's or aiokafka's internals, behind one seam.

Each correction names what it patches and why; `tests/unit/test_framework_seams.py` holds a
canary for each that fails when the private attributes it relies on change (and checks that
the installed versions are the pinned ones: faust-streaming 0.15.3, aiokafka 0.14.0).

Kept after the move to Apache Kafka (the Tansu-only corrections are gone: the fetch-wait
patch and the changelog highwater rebuild, see docs/reliability.md):

1. The delivery guard (``streams/delivery.py``): Faust commits input offsets past records
   its fetcher skipped while a rebalance seeks partitions back; the guard re-reads them.
   A Faust defect, not a broker one: the kill storms lost interactions without it on Kafka
   as on Tansu (tests/integration/test_accounting.py, nightly set).
   Patches ``faust.transport.consumer.Consumer.getmany`` and ``.on_partitions_revoked``,
   and ``faust.transport.drivers.aiokafka.AIOKafkaConsumerThread.seek_to_committed``;
   reads ``Consumer._read_offset``, ``._add_gap``, ``._thread.seek_wait`` and
   ``AIOKafkaConsumerThread._ensure_consumer`` / ``.call_thread``.
2. Group-less metadata (``serving/kafka_reader.partitions_of``): aiokafka's public
   ``topics()`` fills a throwaway metadata object, so a consumer without a subscription
   never learns a topic's partitions; ``AIOKafkaConsumer._client.force_metadata_update``
   refreshes its own. Not a patch, a private call; canaried the same way.
3. Search answers as two lists (``serving/milvus_store._pairs``): pymilvus builds a dict
   per hit, and reading each hit's id and distance from it cost a seventh of a saturated
   worker's CPU; its ``HybridHits`` also carry ``ids`` and ``distances`` as lists, read
   instead. Not a patch, an attribute read, with a hit-by-hit fallback; canaried.
"""

from __future__ import annotations

from collections.abc import Callable

from streams.delivery import guard_deliveries


def install_corrections(*, on_reread: Callable[[str], None]) -> None:
    """Install every correction (once per worker process, before the app is built)."""
    guard_deliveries(on_reread=on_reread)
