"""Integration tests of the embedded broker (Apache Kafka) and the track store, the latter against
both Milvus Lite and the Milvus standalone server (``milvus_target`` is parametrized).

They talk to real processes started by the fixtures in conftest.py; every test uses its
own topic / collection names so they can run in any order against the shared servers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from schemas.settings import Settings
from serving.kafka_topics import ensure_topics, partition_counts
from serving.milvus_schema import VARCHAR_MAX_BYTES, FieldTooLong, MilvusError, TrackRow
from serving.milvus_store import TrackStore
from tests.integration.conftest import MilvusTarget

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

    # Manual assignment, no group: the test reads what it wrote, nothing to share.
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
def store(milvus_target: MilvusTarget, unique: str) -> Iterator[TrackStore]:
    with TrackStore(
        uri=milvus_target.uri,
        collection=f"tracks_{unique}",
        dim=DIM,
        timeout_s=30,
        **milvus_target.store_options,
    ) as s:
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


def test_search_many_answers_each_listener_in_one_call_with_ids_and_cosines(
    filled: tuple[TrackStore, dict[str, npt.NDArray[np.float32]]],
) -> None:
    """The worker's batched search: one query per listener, (id, cosine) best first, the
    same neighbours the single search finds; no stored field is asked for."""
    store, vecs = filled
    queries = [vecs["track-0"], vecs["track-42"], vecs["track-199"]]
    answers = store.search_many(queries, k=8)
    assert len(answers) == 3
    for q, found in zip(queries, answers, strict=True):
        single = store.search(q, k=8)
        assert [t for t, _ in found] == [h.track_id for h in single]
        for t, score in found:
            assert score == pytest.approx(float(vecs[t] @ q), abs=1e-4)
    assert store.search_many([], k=5) == [] and store.search_many(queries, k=0) == [[], [], []]


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


def test_schema_limits_enforced_before_writing(store: TrackStore) -> None:
    rng = np.random.default_rng(3)
    store.upsert([_row(1, _vec(rng))])
    # Lite would store a 300-character artist; the server would reject the whole batch.
    too_long = _row(2, _vec(rng), artist="a" * 300)
    with pytest.raises(FieldTooLong, match=r"artist_id is 300 bytes.*limit of 128"):
        store.upsert([_row(3, _vec(rng)), too_long])
    # Bytes, as the server counts them: 65 two-byte characters are 130 bytes.
    with pytest.raises(FieldTooLong, match="genre is 130 bytes"):
        store.upsert([_row(4, _vec(rng), genre="é" * 65)])
    assert store.count() == 1  # nothing of the rejected batches was written
    # Exactly at the limit is fine, on Lite and on the server.
    at_limit = _row(5, _vec(rng), artist="b" * VARCHAR_MAX_BYTES["artist_id"])
    store.upsert([at_limit])
    assert store.get(["track-5"])["track-5"].artist_id == "b" * 128


def test_indexes_as_configured(store: TrackStore, milvus_target: MilvusTarget) -> None:
    from pymilvus import MilvusClient

    client = MilvusClient(uri=milvus_target.uri)
    try:
        assert set(client.list_indexes(store.collection)) >= {"embedding", "uploaded_at"}
        vec = client.describe_index(store.collection, "embedding")
        scalar = client.describe_index(store.collection, "uploaded_at")
    finally:
        client.close()
    assert vec["index_type"] == milvus_target.store_options["index_type"]
    assert scalar["index_type"] == milvus_target.store_options["scalar_index"]
    if vec["index_type"] == "HNSW":
        assert int(vec["M"]) == 16 and int(vec["efConstruction"]) == 200


def test_bounded_reads_skip_the_time_tick_and_see_other_writers(
    store: TrackStore, milvus_target: MilvusTarget
) -> None:
    """Recommendation reads are Bounded: fast (no wait for the server's time tick), and a
    row written by another client becomes visible within the graceful time (5 s)."""
    rng = np.random.default_rng(5)
    store.upsert([_row(i, _vec(rng)) for i in range(20)])
    opts = {**milvus_target.store_options}

    def median_search_s(reader: TrackStore) -> float:
        q = _vec(rng)
        times = []
        for _ in range(7):
            t0 = time.perf_counter()
            reader.search(q, k=5)
            times.append(time.perf_counter() - t0)
        return sorted(times)[len(times) // 2]

    uri, name = milvus_target.uri, store.collection
    with (
        TrackStore(uri=uri, collection=name, dim=DIM, **opts) as bounded,
        TrackStore(
            uri=uri, collection=name, dim=DIM, **{**opts, "consistency": "Strong"}
        ) as strong,
    ):
        fast, slow = median_search_s(bounded), median_search_s(strong)
        if milvus_target.mode == "server":
            # Strong waits for the next time tick (~200 ms); Bounded does not (~2 ms).
            assert fast * 4 < slow, (fast, slow)
        assert fast < 0.1, fast
        # Another writer's row: the Bounded reader (no writes of its own) sees it in time.
        v = _vec(rng)
        store.upsert([_row(500, v)])
        deadline = time.monotonic() + store.graceful_s + 2.0
        while time.monotonic() < deadline:
            hits = bounded.search(v, k=1)
            if hits and hits[0].track_id == "track-500":
                break
            time.sleep(0.05)
        else:
            raise AssertionError("a row written by another client never became visible")


# --- consumer lag ----------------------------------------------------------------------


def test_lag_reader_reports_committed_vs_end_offsets(broker: str, unique: str) -> None:
    from kafka.admin import KafkaAdminClient
    from kafka.structs import OffsetAndMetadata

    from streams.lag import LagCollector, LagReader
    from streams.metrics import Metrics

    topic, idle, group = f"lag-{unique}", f"idle-{unique}", f"group-{unique}"
    ensure_topics(broker, [topic, idle], partitions=2, timeout_s=20)
    # One batch of 5 per partition: the end offset counts records, not batches.
    producer = KafkaProducer(bootstrap_servers=broker, acks="all", linger_ms=200)
    try:
        for i in range(10):
            producer.send(topic, key=b"k", value=str(i).encode(), partition=i % 2)
        producer.flush(timeout=20)
    finally:
        producer.close(timeout=5)
    with KafkaAdminClient(bootstrap_servers=broker) as admin:
        admin.alter_group_offsets(group, {TopicPartition(topic, 0): OffsetAndMetadata(2, "", -1)})

    with LagReader(bootstrap=broker, group_id=group, topics=[topic, idle], timeout_s=10) as r:
        snapshot = {(p.topic, p.partition): p for p in r.read()}
    assert snapshot[(topic, 0)].committed == 2 and snapshot[(topic, 0)].end == 5
    assert snapshot[(topic, 0)].lag == 3
    # Nothing committed yet: the whole partition is lag (workers start from the earliest).
    assert snapshot[(topic, 1)].committed == -1 and snapshot[(topic, 1)].lag == 5
    assert snapshot[(idle, 0)].lag == 0 and snapshot[(idle, 1)].lag == 0

    metrics = Metrics()
    collector = LagCollector(reader=LagReader(bootstrap=broker, group_id=group), metrics=metrics)
    with collector.reader:
        assert {(p.topic, p.partition) for p in collector.collect_once()} == {(topic, 0)}
    assert (
        metrics.registry.get_sample_value(
            "resonate_consumer_lag_messages", {"topic": topic, "partition": "0"}
        )
        == 3
    )
    assert (
        metrics.registry.get_sample_value("resonate_lag_collections_total", {"outcome": "ok"}) == 1
    )


# Valid ids by the event contract that are hostile to a naively built expression.
HOSTILE_IDS = [
    "it's",
    'say "hi"',
    "back\\slash",
    "trailing\\",
    "mix'\"\\'",
    "ünïcødé-曲",
    "emoji-🎵",
    "100%27 = %25",
    "ops == [] && % _ (x)",
    'x"] or track_id in ["y',
    "' or '1'=='1",
]


def test_hostile_ids_round_trip_everywhere(store: TrackStore) -> None:
    """Upsert, get, search with exclusions, filtered search and delete with ids holding
    quotes, backslashes, non-ASCII and operators: each id is matched exactly. Ids with a line
    break cannot be matched by any expression on Lite: refused before writing, and
    harmless in reads and deletes."""
    from serving.track_filter import TrackFilter

    rng = np.random.default_rng(11)
    vecs = {tid: _vec(rng) for tid in HOSTILE_IDS}
    rows = [
        TrackRow(
            track_id=tid,
            embedding=vecs[tid],
            artist_id=f"artist {tid}",
            genre=f"genre {tid}",
            release_date="2024-05-01",
            uploaded_at_ms=1_700_000_000_000 + i,
            top_tags=("rock",),
            model_version="msd_musicnn-1",
            title=tid,
        )
        for i, tid in enumerate(HOSTILE_IDS)
    ]
    store.upsert(rows)
    store.upsert(rows[:3])  # replacing by a hostile id works too
    assert store.count() == len(HOSTILE_IDS)
    got = store.get(HOSTILE_IDS)
    assert set(got) == set(HOSTILE_IDS)
    for tid, row in got.items():
        assert row.artist_id == f"artist {tid}" and row.title == tid
    n = len(HOSTILE_IDS)
    for tid in HOSTILE_IDS:
        assert store.search(vecs[tid], k=1)[0].track_id == tid
        others = {h.track_id for h in store.search(vecs[tid], k=n, exclude={tid})}
        assert others == set(HOSTILE_IDS) - {tid}, tid
        only = TrackFilter(genre=f"genre {tid}").expression()
        assert [h.track_id for h in store.search_where(vecs[tid], k=n, where=only)] == [tid]
        not_artist = TrackFilter(exclude_ids=(tid,), exclude_artists=(f"artist {tid}",))
        hits = store.search_where(vecs[tid], k=n, where=not_artist.expression())
        assert {h.track_id for h in hits} == set(HOSTILE_IDS) - {tid}, tid
    gone = HOSTILE_IDS[::2]
    store.delete(gone)
    assert set(store.get(HOSTILE_IDS)) == set(HOSTILE_IDS[1::2])
    assert store.count() == len(HOSTILE_IDS[1::2])
    broken = replace(rows[1], track_id="line\nbreak")
    with pytest.raises(ValueError, match="control character"):
        store.upsert([rows[0], broken])
    assert store.count() == len(HOSTILE_IDS[1::2])  # nothing of that batch was written
    assert store.get(["line\nbreak", "\r"]) == {}
    store.delete(["line\nbreak"])
    kept = HOSTILE_IDS[1]
    hits = store.search(vecs[kept], k=1, exclude={"line\nbreak"})
    assert [h.track_id for h in hits] == [kept]


def test_storage_formats_with_a_cluster_id_that_starts_with_a_dash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One random base64url id in 64 starts with "-"; the tool must not take it for an option."""
    import infra.kafka_broker as kb

    monkeypatch.setattr(kb, "new_cluster_id", lambda: "-" + "A" * 21)
    broker = kb.embedded_kafka(Settings(), run_dir=tmp_path, log_dir=tmp_path)
    server = tmp_path / "server.properties"
    server.write_text(broker.server_properties(tmp_path / "data"))
    java = [str(kb.java_binary()), "-cp", f"{kb.check_libs(broker.libs)}/*"]
    broker._format(java, server)
    assert "-" + "A" * 21 in (tmp_path / "data" / "meta.properties").read_text()


def test_the_embedded_broker_keeps_bounded_retention_and_one_replica() -> None:
    import infra.kafka_broker as kb

    s = Settings()
    props = dict(
        line.split("=", 1)
        for line in kb.embedded_kafka(s, run_dir=Path("r"), log_dir=Path("l"))
        .server_properties(Path("d"))
        .splitlines()
    )
    assert props["log.retention.bytes"] == str(s.kafka_retention_bytes)
    assert props["log.retention.ms"] == str(s.kafka_retention_ms)
    assert int(props["log.segment.bytes"]) <= s.kafka_retention_bytes
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"


def test_catalog_feed_skips_its_own_deltas_undecoded(broker: str, unique: str) -> None:
    """A worker applies its deltas in place; its feed must not decode them again. Records
    keyed with the catalog's origin are skipped (even one that would not decode); records of
    other workers (and of this worker's earlier life, another origin) are applied."""
    import asyncio

    from streams.catalog import Catalog, CatalogFeed
    from streams.state import CatalogDelta

    topic = f"deltas-{unique}"
    ensure_topics(broker, [topic], partitions=2, timeout_s=20)
    catalog = Catalog(ttl_s=0.0)
    other = CatalogDelta(delta_id="other", plays={"t-other": 1}).model_dump_json().encode()
    own = CatalogDelta(delta_id="own", plays={"t-own": 1}).model_dump_json().encode()
    producer = KafkaProducer(bootstrap_servers=broker, acks="all")
    try:
        producer.send(topic, key=b"another-worker", value=other)
        producer.send(topic, key=catalog.origin, value=own)
        producer.send(topic, key=catalog.origin, value=b"{not json")
        producer.flush(timeout=20)
    finally:
        producer.close(timeout=5)

    async def feed_until_caught_up() -> None:
        feed = CatalogFeed(bootstrap=broker, topic=topic, catalog=catalog, fetch_max_wait_ms=100)
        task = asyncio.create_task(feed.run())
        try:
            await asyncio.wait_for(feed.caught_up.wait(), timeout=60)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert feed.invalid == 0  # the undecodable own record was never parsed

    asyncio.run(feed_until_caught_up())
    assert catalog.plays == {"t-other": 1}
