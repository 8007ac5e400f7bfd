"""The whole spine on the real embedded stack: Apache Kafka, Faust, Triton (MusiCNN), and Milvus
(Lite, then the standalone server: ``stack_options`` is parametrized).

Events go in through a plain kafka-python producer and recommendations come
back through a plain consumer, as a platform would see them.
"""

from __future__ import annotations

import csv
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from infra.demo import Bus
from infra.stack import EmbeddedStack
from models.convert_musicnn import MUSICNN_CARD
from models.fusion_weights import builtin
from tests.integration.events import answer, clip_uri, play, stack_settings, upload, wait_stored

# A track whose two clips (15 s and 75 s in) MusiCNN puts close together.
PAIR_TRACK = "fretsonfire-songs-sectoid__Metal_madness"


@pytest.fixture(scope="module")
def clips(data_dir: Path) -> list[dict[str, str]]:
    manifest = data_dir / "audio" / "manifest.csv"
    assert manifest.is_file(), f"real clips missing: {manifest} (set RESONATE_DATA_DIR)"
    with manifest.open() as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module", params=["lite", "server"])
def stack_options(request: pytest.FixtureRequest, data_dir: Path) -> dict[str, Any]:
    """The whole module runs on Milvus Lite, then on the Milvus standalone server (HNSW)."""
    return {
        "audio_roots": [(data_dir / "audio").resolve()],
        "workers": 1,
        "milvus_mode": request.param,
    }


@pytest.fixture(scope="module")
def catalog(stack: EmbeddedStack, bus: Bus, clips: list[dict[str, str]], data_dir: Path) -> dict:
    """Upload every real clip once; wait until all are searchable."""
    uploaded = datetime.now(UTC)
    for c in clips:
        upload(
            bus,
            stack.settings,
            c["clip_id"],
            clip_uri(data_dir, c["clip_id"]),
            uploaded_at=uploaded,
            artist_id=c["track_id"],  # both clips of a track share an "artist"
            genre=c["style"],
        )
    bus.flush()
    rows = wait_stored(stack.settings, [c["clip_id"] for c in clips])
    return {"clips": clips, "rows": rows}


def test_uploaded_real_clips_are_in_milvus_with_tags(catalog: dict) -> None:
    rows = catalog["rows"]
    assert len(rows) == len(catalog["clips"]) == 40
    metal = rows[f"{PAIR_TRACK}__0"]
    assert len(metal.embedding) == 200
    assert {"rock", "metal", "heavy metal", "hard rock"} & set(metal.top_tags[:5])
    assert metal.artist_id == PAIR_TRACK


def test_recommendations_exclude_heard_and_find_the_other_clip(
    stack: EmbeddedStack, bus: Bus, catalog: dict
) -> None:
    s = stack.settings
    user = f"u-{uuid.uuid4().hex[:6]}"
    t0 = datetime.now(UTC)
    skipped = "singularity-music__Nebula__0"
    play(bus, s, user, skipped, "skip", t0)
    eid = play(bus, s, user, f"{PAIR_TRACK}__0", "play", t0 + timedelta(seconds=1))
    rec = answer(bus, eid)
    ids = [i.track_id for i in rec.items]
    assert len(ids) == s.top_k
    assert skipped not in ids and f"{PAIR_TRACK}__0" not in ids
    assert f"{PAIR_TRACK}__1" in ids, ids
    # Every artifact behind the list: the pipeline version and the fusion weights in force.
    assert rec.model_version == f"{s.model_version}+{MUSICNN_CARD.version}+{builtin().version}"
    assert all(i.reason for i in rec.items)


def test_invalid_events_are_counted_not_fatal(
    stack: EmbeddedStack, bus: Bus, catalog: dict
) -> None:
    s = stack.settings
    bus.send(s.interactions_topic, "x", b"{not json")
    bus.send(s.interactions_topic, "x", b'{"event_id": "1", "type": "pause"}')
    user = f"u-{uuid.uuid4().hex[:6]}"
    eid = play(bus, s, user, "singularity-music__Awakening__0", "play", datetime.now(UTC))
    assert answer(bus, eid).user_id == user
    text = stack.workers[0].metrics_text()
    assert 'resonate_events_total{outcome="invalid",topic="interactions"}' in text


def test_user_state_survives_a_worker_restart(
    stack: EmbeddedStack, bus: Bus, catalog: dict
) -> None:
    s = stack.settings
    user = f"u-{uuid.uuid4().hex[:6]}"
    t0 = datetime.now(UTC)
    first = ["singularity-music__Coherence__0", "asc-music__frontiers__0"]
    for i, tr in enumerate(first):
        eid = play(bus, s, user, tr, "play", t0 + timedelta(seconds=i))
    answer(bus, eid)
    stack.stop_worker(0, kill=True)  # a crash, not a clean shutdown
    stack.start_worker(0)
    stack.wait_workers_ready(timeout_s=180)
    eid = play(bus, s, user, "asc-music__machine_wars__0", "play", t0 + timedelta(seconds=5))
    rec = answer(bus, eid, timeout_s=120)
    ids = [i.track_id for i in rec.items]
    # Only a recovered state knows the first two plays: they must stay excluded,
    # and their audio must still shape the list (their other clips rank in it).
    assert not set(first) & set(ids)
    assert {"singularity-music__Coherence__1", "asc-music__frontiers__1"} & set(ids), ids


def test_tracks_without_audio_are_recommended_through_coplays(
    stack: EmbeddedStack, bus: Bus, catalog: dict
) -> None:
    s = stack.settings
    tag = uuid.uuid4().hex[:6]
    a, b = f"noaudio-a-{tag}", f"noaudio-b-{tag}"
    t0 = datetime.now(UTC)
    for i in range(3):  # three listeners play a then b in one session
        user = f"co-{tag}-{i}"
        play(bus, s, user, a, "play", t0)
        last = play(bus, s, user, b, "play", t0 + timedelta(minutes=3))
        answer(bus, last)
    newcomer = f"new-{tag}"
    rec = answer(bus, play(bus, s, newcomer, a, "play", t0 + timedelta(minutes=5)))
    by_id = {i.track_id: i for i in rec.items}
    assert b in by_id, [i.track_id for i in rec.items]
    assert a in by_id[b].reason and "also played" in by_id[b].reason
    assert a not in by_id


def test_upload_over_http_from_an_allowed_host(
    tmp_path_factory: pytest.TempPathFactory, data_dir: Path, weights_path: Path
) -> None:
    """http(s) audio URIs are fetched when the host is allowed (a local web server here)."""
    import functools
    import http.server
    import threading

    handler = functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=str(data_dir / "audio")
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    settings = stack_settings(
        tmp_path_factory.mktemp("stack-http"),
        weights_path,
        audio_hosts=[f"127.0.0.1:{port}"],  # host:port; a bare host means port 80 only
        workers=1,
    )
    clip = f"{PAIR_TRACK}__1"
    try:
        with EmbeddedStack(settings=settings) as st:
            b = Bus(st.settings)
            try:
                for tid, host in ((clip, "127.0.0.1"), ("blocked", "localhost")):
                    upload(b, st.settings, tid, f"http://{host}:{port}/{clip}.ogg")
                b.flush()
            finally:
                b.close()
            rows = wait_stored(st.settings, [clip], timeout_s=120)
            assert clip in rows and rows[clip].top_tags
            text = st.workers[0].metrics_text()
            assert (
                'resonate_events_total{outcome="dead-lettered",topic="track-uploads"} 1.0' in text
            ), text
    finally:
        server.shutdown()
