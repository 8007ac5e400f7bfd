"""The Kafka admin calls on the pipeline's topics: create them up front (on the embedded
broker or a production cluster alike), read their partition counts and message limits, and
the record limit a worker derives from those (``streams.runtime``).

Faust can auto-create topics, but it then picks its own partition count and auto-creation
is often disabled on production clusters; creating them explicitly with the configured
partition count keeps the key -> partition placement identical everywhere.
"""

from __future__ import annotations

import logging

import kafka.errors as kerrors
from kafka.admin import KafkaAdminClient

from serving.kafka_security import PLAINTEXT, KafkaSecurity

log = logging.getLogger(__name__)

_TOPIC_ALREADY_EXISTS = kerrors.TopicAlreadyExistsError.errno


class TopicError(RuntimeError):
    """A topic could not be created or did not become usable."""


def ensure_topics(
    bootstrap: str,
    names: list[str],
    *,
    partitions: int,
    timeout_s: float,
    replication_factor: int = 1,
    security: KafkaSecurity = PLAINTEXT,
) -> dict[str, int]:
    """Create the topics of ``names`` that do not exist yet; return name -> partition count.

    Idempotent: existing topics are left alone (also when another process creates one
    between our listing and our create request). An existing topic whose partition count
    differs from ``partitions`` is reported with a warning, not altered: adding partitions
    would move keys to other partitions and break per-key ordering and table state.
    Blocks until every topic has a leader for every partition.
    """
    if partitions < 1:
        raise ValueError(f"partitions must be >= 1, got {partitions}")
    wanted = list(dict.fromkeys(names))  # de-duplicate, keep order
    if not wanted:
        return {}
    ms = max(1, int(timeout_s * 1000))
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            client_id="resonate-topics",
            request_timeout_ms=ms,
            bootstrap_timeout_ms=ms,
            **security.kafka_python(),
        )
    except kerrors.KafkaError as exc:
        raise TopicError(f"cannot reach Kafka at {bootstrap}: {exc}") from exc
    try:
        existing = set(admin.list_topics())
        missing = [n for n in wanted if n not in existing]
        if missing:
            log.info("creating topics %s with %d partitions", missing, partitions)
            spec = {
                n: {"num_partitions": partitions, "replication_factor": replication_factor}
                for n in missing
            }
            result = admin.create_topics(spec, timeout_ms=ms, raise_errors=False)
            for topic in result["topics"]:
                code = topic["error_code"]
                if code not in (0, _TOPIC_ALREADY_EXISTS):
                    raise TopicError(
                        f"creating topic {topic['name']!r} failed: "
                        f"{kerrors.for_code(code).__name__} {topic.get('error_message') or ''}"
                    )
        # CreateTopics only says the request was accepted; wait for leaders so the first
        # produce does not fail with UNKNOWN_TOPIC_OR_PARTITION.
        try:
            admin.wait_for_topics(wanted, timeout_ms=ms)
        except kerrors.KafkaTimeoutError as exc:
            raise TopicError(f"topics not ready within {timeout_s:.0f} s: {exc}") from exc
        counts = _partition_counts(admin, wanted)
    finally:
        admin.close()
    for name in wanted:
        if counts[name] != partitions:
            log.warning(
                "topic %r has %d partitions, not the configured %d; leaving it as it is",
                name,
                counts[name],
                partitions,
            )
    return counts


def partition_counts(
    bootstrap: str,
    names: list[str],
    *,
    timeout_s: float,
    security: KafkaSecurity = PLAINTEXT,
) -> dict[str, int]:
    """Partition count of each topic as the broker's metadata reports it."""
    with _admin(bootstrap, timeout_s, security) as admin:
        return _partition_counts(admin, names)


def _partition_counts(admin: KafkaAdminClient, names: list[str]) -> dict[str, int]:
    described = {t["name"]: t for t in admin.describe_topics(names)}
    counts: dict[str, int] = {}
    for name in names:
        info = described.get(name)
        if info is None or info.get("error_code", 0) != 0:
            raise TopicError(f"topic {name!r} is missing from the broker metadata")
        counts[name] = len(info.get("partitions") or [])
    return counts


def message_limits(
    bootstrap: str,
    names: list[str],
    *,
    timeout_s: float,
    security: KafkaSecurity = PLAINTEXT,
) -> dict[str, int]:
    """``max.message.bytes`` of each existing topic of ``names``, as the broker applies it
    (topics not created yet are left out: they will take the broker's default)."""
    from kafka.admin import ConfigResource, ConfigResourceType

    with _admin(bootstrap, timeout_s, security) as admin:
        existing = set(admin.list_topics())
        wanted = [n for n in dict.fromkeys(names) if n in existing]
        if not wanted:
            return {}
        resources = [
            ConfigResource(ConfigResourceType.TOPIC, n, configs={"max.message.bytes": None})
            for n in wanted
        ]
        answer = admin.describe_configs(resources, config_filter="all")
    topics = answer.get("topic", {})
    return {
        n: int(topics[n]["max.message.bytes"]["value"])
        for n in wanted
        if "max.message.bytes" in topics.get(n, {})
    }


def record_limit(wanted: int, limits: dict[str, int], *, floor: int) -> int:
    """The largest record a worker may produce: ``wanted`` (its producer's request size),
    lowered to the smallest topic limit; below ``floor`` (what an accepted input plus a
    dead letter's headers needs) the configuration cannot keep its promise: refuse."""
    effective = min([wanted, *limits.values()])
    if effective < floor:
        smallest = min(limits, key=lambda n: limits[n]) if limits else "the producer"
        raise TopicError(
            f"records up to {floor} bytes must fit, but {smallest} takes only {effective}: "
            "raise its max.message.bytes or lower RESONATE_MAX_EVENT_BYTES"
        )
    return effective


def _admin(bootstrap: str, timeout_s: float, security: KafkaSecurity) -> KafkaAdminClient:
    ms = max(1, int(timeout_s * 1000))
    return KafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="resonate-topics",
        request_timeout_ms=ms,
        bootstrap_timeout_ms=ms,
        **security.kafka_python(),
    )
