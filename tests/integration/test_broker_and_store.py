"""Integration tests of the embedded broker (Tansu) and the track store (Milvus Lite).

They talk to real processes started by the fixtures in conftest.py; every test uses its
own topic / collection names so they can run in any order against the shared servers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from infra.topics import ensure_topics, partition_counts
from serving.milvus_store import MilvusError, TrackRow, TrackStore

DIM = 16


# --- broker ----------------------------------------------------------------------------


def test_ensure_topics_creates_requested_partitions(broker: str, unique: str) -> None:
    names = [f"a-{unique}", f"b-{unique}"]
    counts = ensure_topics(broker, names, partitions=3, timeout_s=20)
    assert counts == {names[0]: 3, names[1]: 3}
    # What the broker itself reports, independently of ensure_topics' own bookkeeping.
    assert partition_counts(broker, names, timeout_s=10) == {names[0]: 3, names[1]: 3}
    # Idempotent: a second call (with one new name) neither fails nor changes old topics.
    again = ensure_topics(broker, [*names, f"c-{unique}"], partitions=2, timeout_s=20)
    assert again == {names[0]: 3, names[1]: 3, f"c-{unique}": 2}


def test_keyed_json_round_trip(broker: str, unique: str) -> None:
    topic = f"events-{unique}"
    partitions = 4
    ensure_topics(broker, [topic], partitions=partitions, timeout_s=20)
    sent = [{"user_id": f"u{i % 5}", "track_id": f"t{i}", "seq": i} for i in range(40)]

    # Plain bytes in and out: kafka-python 3 deprecates bare-callable (de)serializers.
    producer = KafkaProducer(bootstrap_servers=broker, acks="all")
    try:
        for ev in sent:
            producer.send(topic, key=str(ev["user_id"]).encode(), value=json.dumps(ev).encode())
        producer.flush(timeout=20)
    finally:
        producer.close(timeout=5)

    # Manual assignment, no group: a kafka-python group join takes ~20 s against Tansu.
    consumer = KafkaConsumer(
        bootstrap_servers=broker,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    received: list[tuple[int, str, dict[str, object]]] = []
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        deadline = time.monotonic() + 20
        while len(received) < len(sent) and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=500).items():
                received.extend(
                    (tp.partition, r.key.decode(), json.loads(r.value)) for r in records
                )
    finally:
        consumer.close()

    assert len(received) == len(sent)
    assert sorted(v["seq"] for _, _, v in received) == list(range(len(sent)))  # type: ignore[type-var]
    # Keyed: all events of a user land on one partition, in the order they were sent.
    by_user: dict[str, set[int]] = {}
    for part, key, value in received:
        assert key == value["user_id"]
        by_user.setdefault(key, set()).add(part)
    assert all(len(parts) == 1 for parts in by_user.values())
    for user in by_user:
        seqs = [v["seq"] for _, k, v in received if k == user]
        assert seqs == sorted(seqs)  # type: ignore[type-var]


# --- track store -----------------------------------------------------------------------


def _vec(rng: np.random.Generator) -> npt.NDArray[np.float32]:
    v = rng.standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def _row(
    i: int, vec: npt.NDArray[np.float32], *, artist: str = "", genre: str = "rock"
) -> TrackRow:
    return TrackRow(
        track_id=f"track-{i}",
        embedding=vec,
        artist_id=artist or f"artist-{i % 7}",
        genre=genre,
        release_date="2024-05-01" if i % 2 else "",
        uploaded_at_ms=1_700_000_000_000 + i * 1000,
        top_tags=("rock", "guitar") if i % 2 else ("ambient",),
        model_version="msd_musicnn-1",
    )


@pytest.fixture
def store(milvus: str, unique: str) -> Iterator[TrackStore]:
    with TrackStore(uri=milvus, collection=f"tracks_{unique}", dim=DIM, timeout_s=30) as s:
        s.ensure_collection()
        yield s
        s.drop()


@pytest.fixture
def filled(store: TrackStore) -> tuple[TrackStore, dict[str, npt.NDArray[np.float32]]]:
    rng = np.random.default_rng(7)
    vecs = {f"track-{i}": _vec(rng) for i in range(200)}
    store.upsert([_row(i, vecs[f"track-{i}"]) for i in range(200)])
    return store, vecs


def test_upsert_is_immediately_searchable(store: TrackStore) -> None:
    rng = np.random.default_rng(1)
    store.upsert([_row(i, _vec(rng)) for i in range(50)])
    # No flush and no sleep: each new row must be found by the very next search.
    for i in range(100, 110):
        v = _vec(rng)
        store.upsert([_row(i, v)])
        hits = store.search(v, k=1)
        assert hits and hits[0].track_id == f"track-{i}"
    assert store.count() == 60


def test_nearest_neighbour_of_stored_vector_is_itself(
    filled: tuple[TrackStore, dict[str, npt.NDArray[np.float32]]],
) -> None:
    store, vecs = filled
    for tid in ["track-0", "track-17", "track-199"]:
        hits = store.search(vecs[tid], k=5)
        assert len(hits) == 5
        assert hits[0].track_id == tid
        assert hits[0].score == pytest.approx(1.0, abs=1e-4)  # cosine of a vector with itself
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True)  # higher is better, best first
        # Scores are the cosine similarities numpy computes.
        for h in hits:
            assert h.score == pytest.approx(float(vecs[h.track_id] @ vecs[tid]), abs=1e-4)
    hit = store.search(vecs["track-17"], k=1)[0]
    assert hit.artist_id == "artist-3" and hit.top_tags == ("rock", "guitar")
    assert hit.uploaded_at_ms == 1_700_000_017_000


def test_search_exclude(filled: tuple[TrackStore, dict[str, npt.NDArray[np.float32]]]) -> None:
    store, vecs = filled
    q = vecs["track-5"]
    top = [h.track_id for h in store.search(q, k=10)]
    excluded = set(top[:4])
    hits = store.search(q, k=6, exclude=excluded)
    assert len(hits) == 6
    assert not excluded & {h.track_id for h in hits}
    assert [h.track_id for h in hits] == top[4:10]
    # Ids with quotes cannot break the filter expression.
    assert len(store.search(q, k=3, exclude={'x"] or track_id in ["y', "track-5"})) == 3


def test_get_returns_metadata_and_vectors(
    filled: tuple[TrackStore, dict[str, npt.NDArray[np.float32]]],
) -> None:
    store, vecs = filled
    got = store.get(["track-3", "track-4", "missing"])
    assert set(got) == {"track-3", "track-4"}
    row = got["track-3"]
    np.testing.assert_allclose(np.asarray(row.embedding), vecs["track-3"], rtol=1e-6)
    assert row.artist_id == "artist-3"
    assert row.genre == "rock"
    assert row.release_date == "2024-05-01"
    assert row.uploaded_at_ms == 1_700_000_003_000
    assert row.top_tags == ("rock", "guitar")
    assert row.model_version == "msd_musicnn-1"
    assert got["track-4"].release_date == "" and got["track-4"].top_tags == ("ambient",)


def test_upsert_existing_id_replaces_it(
    filled: tuple[TrackStore, dict[str, npt.NDArray[np.float32]]],
) -> None:
    store, vecs = filled
    assert store.count() == 200
    new_vec = _vec(np.random.default_rng(99))
    store.upsert([_row(8, new_vec, artist="artist-new", genre="jazz")])
    assert store.count() == 200
    row = store.get(["track-8"])["track-8"]
    assert row.artist_id == "artist-new" and row.genre == "jazz"
    np.testing.assert_allclose(np.asarray(row.embedding), new_vec, rtol=1e-6)
    assert store.search(new_vec, k=1)[0].track_id == "track-8"
    # The old vector no longer leads to the replaced row's old version.
    old_hits = store.search(vecs["track-8"], k=1)
    assert old_hits[0].track_id != "track-8" or old_hits[0].score < 0.999


def test_recent_returns_newest_first(
    filled: tuple[TrackStore, dict[str, npt.NDArray[np.float32]]],
) -> None:
    store, _ = filled
    hits = store.recent(since_ms=1_700_000_190_000, limit=3)
    assert [h.track_id for h in hits] == ["track-199", "track-198", "track-197"]
    assert len(store.recent(since_ms=1_700_000_190_000, limit=100)) == 10


def test_ensure_collection_idempotent_and_checks_dim(store: TrackStore, milvus: str) -> None:
    store.ensure_collection()  # second call on an existing collection is fine
    with TrackStore(uri=milvus, collection=store.collection, dim=DIM + 1) as wrong:
        with pytest.raises(MilvusError):
            wrong.ensure_collection()
