"""The clients platforms use, against the embedded Apache Kafka and a running worker.

Each client publishes an upload (a real clip) and interactions, and reads the list that
answers them from the ``recommendations`` topic, with a consumer group of its own where the
client has one. The README's client matrix lists what is tested here:

- kafka-python (pure Python; the demo's and the tests' platform client);
- confluent-kafka (librdkafka through Python);
- Debian's ``kcat`` 1.7 (librdkafka 2.0, the command-line client SREs reach for).
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from infra.stack import EmbeddedStack
from schemas.events import Interaction, Recommendation, TrackUpload
from tests.integration.events import clip_uri, wait_stored

log = logging.getLogger(__name__)

CLIP = "fretsonfire-songs-sectoid__Metal_madness__0"


@pytest.fixture(scope="module")
def stack_options(data_dir: Path) -> dict[str, Any]:
    return {"audio_roots": [(data_dir / "audio").resolve()], "workers": 1}


def _events(track_id: str, uri: str, user: str) -> tuple[bytes, list[tuple[str, bytes]]]:
    """An upload of ``track_id`` and two plays of it by ``user`` (ids, JSON bytes)."""
    up = TrackUpload(
        event_id=uuid.uuid4().hex,
        track_id=track_id,
        audio_uri=uri,
        uploaded_at=datetime.now(UTC),
        genre="metal",
    )
    plays = []
    for _ in range(2):
        ev = Interaction.model_validate(
            {
                "event_id": uuid.uuid4().hex,
                "type": "play",
                "user_id": user,
                "track_id": track_id,
                "occurred_at": datetime.now(UTC),
            }
        )
        plays.append((ev.event_id, ev.model_dump_json().encode()))
    return up.model_dump_json().encode(), plays


def _answered(values: Iterable[bytes], wanted: set[str]) -> set[str]:
    got: set[str] = set()
    for v in values:
        rec = Recommendation.model_validate_json(v)
        got |= wanted.intersection(rec.event_ids)
    return got


def _until(what: str, step: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if step():
            return
    raise AssertionError(f"{what}: not within {timeout_s} s")


def test_kafka_python(stack: EmbeddedStack, data_dir: Path) -> None:
    from kafka import KafkaConsumer, KafkaProducer

    s = stack.settings
    track, user = f"kp-{uuid.uuid4().hex[:6]}", f"kp-listener-{uuid.uuid4().hex[:6]}"
    upload, plays = _events(track, clip_uri(data_dir, CLIP), user)
    consumer = KafkaConsumer(
        s.topic(s.recommendations_topic),
        bootstrap_servers=s.kafka_bootstrap,
        group_id=f"kp-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
    )
    producer = KafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all")
    try:
        t0 = time.monotonic()
        _until(
            "kafka-python group assignment",
            lambda: bool(consumer.poll(200) or True) and bool(consumer.assignment()),
            30,
        )
        log.info("kafka-python: new group assigned in %.2f s", time.monotonic() - t0)
        producer.send(s.topic(s.uploads_topic), key=track.encode(), value=upload)
        producer.flush(30)
        assert wait_stored(s, [track], timeout_s=120), "upload not embedded"
        for _, value in plays:
            producer.send(s.topic(s.interactions_topic), key=user.encode(), value=value)
        producer.flush(30)
        wanted, got = {eid for eid, _ in plays}, set()

        def read() -> bool:
            for records in consumer.poll(500).values():
                got.update(_answered((r.value for r in records), wanted))
            return got == wanted

        _until("kafka-python: lists answering both plays", read, 90)
    finally:
        producer.close(5)
        consumer.close()


def test_confluent_kafka(stack: EmbeddedStack, data_dir: Path) -> None:
    from confluent_kafka import Consumer, Producer

    s = stack.settings
    track, user = f"ck-{uuid.uuid4().hex[:6]}", f"ck-listener-{uuid.uuid4().hex[:6]}"
    upload, plays = _events(track, clip_uri(data_dir, CLIP), user)
    assigned: list[float] = []
    consumer = Consumer(
        {
            "bootstrap.servers": s.kafka_bootstrap,
            "group.id": f"ck-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
        }
    )
    t0 = time.monotonic()
    consumer.subscribe(
        [s.topic(s.recommendations_topic)],
        on_assign=lambda c, parts: assigned.append(time.monotonic() - t0),
    )
    producer = Producer({"bootstrap.servers": s.kafka_bootstrap, "acks": "all"})
    errors: list[Any] = []

    def delivered(err: Any, msg: Any) -> None:
        if err is not None:
            errors.append(err)

    try:
        producer.produce(s.topic(s.uploads_topic), key=track, value=upload, on_delivery=delivered)
        assert producer.flush(30) == 0 and not errors, errors
        assert wait_stored(s, [track], timeout_s=120), "upload not embedded"
        for _, value in plays:
            producer.produce(
                s.topic(s.interactions_topic), key=user, value=value, on_delivery=delivered
            )
        assert producer.flush(30) == 0 and not errors, errors
        wanted, got = {eid for eid, _ in plays}, set()

        def read() -> bool:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                got.update(_answered([msg.value()], wanted))
            return got == wanted

        _until("confluent-kafka: lists answering both plays", read, 90)
        assert assigned, "the group never got its partitions"
        log.info("confluent-kafka: new group assigned in %.2f s", assigned[0])
    finally:
        consumer.close()


def test_kcat(stack: EmbeddedStack, data_dir: Path) -> None:
    kcat = shutil.which("kcat")
    assert kcat, "kcat missing: `bash infra/system_packages.sh` installs Debian's kcat"
    s = stack.settings
    track, user = f"kc-{uuid.uuid4().hex[:6]}", f"kc-listener-{uuid.uuid4().hex[:6]}"
    upload, plays = _events(track, clip_uri(data_dir, CLIP), user)

    def produce(topic: str, key: str, value: bytes) -> None:
        subprocess.run(
            [kcat, "-b", s.kafka_bootstrap, "-P", "-t", s.topic(topic), "-k", key],
            input=value + b"\n",
            check=True,
            capture_output=True,
            timeout=30,
        )

    produce(s.uploads_topic, track, upload)
    assert wait_stored(s, [track], timeout_s=120), "upload not embedded"
    for _, value in plays:
        produce(s.interactions_topic, user, value)
    wanted, got = {eid for eid, _ in plays}, set()

    def read() -> bool:
        # -e: exit at the end of every partition; -J: one JSON envelope per record.
        out = subprocess.run(
            [
                kcat,
                "-b",
                s.kafka_bootstrap,
                "-C",
                "-t",
                s.topic(s.recommendations_topic),
                "-o",
                "beginning",
                "-e",
                "-q",
                "-J",
            ],
            check=True,
            capture_output=True,
            timeout=30,
        ).stdout.decode()
        values = [json.loads(line)["payload"].encode() for line in out.splitlines() if line]
        got.update(_answered(values, wanted))
        if got != wanted:
            time.sleep(0.5)
        return got == wanted

    _until("kcat: lists answering both plays", read, 90)
