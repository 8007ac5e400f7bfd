"""Nothing lost, nothing let in, on the real embedded stack (Kafka, Faust, Triton, Milvus Lite).

Dead letters with the original bytes and re-publishing after a fix; an upload whose audio
host is down retried until it is back; Triton and Milvus killed and restarted while
uploads and plays arrive. The SIGKILL and accounting runs are in ``test_accounting.py``.
"""

from __future__ import annotations

import asyncio
import functools
import http.server
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from infra.demo import Bus
from infra.dlq import Letter, choose, read_letters, republish
from infra.procs import free_port
from infra.stack import EmbeddedStack
from streams.deadletter import SOURCE_TOPIC, headers_dict
from tests.integration.events import answer, clip_uri, play, poll, upload, wait_stored

CLIPS = [
    "singularity-music__Coherence__0",
    "asc-music__frontiers__0",
    "asc-music__machine_wars__0",
    "singularity-music__Awakening__0",
]
HTTP_PORT = free_port()  # the audio host that is down, then up


@pytest.fixture(scope="module")
def upload_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("uploads").resolve()


@pytest.fixture(scope="module")
def stack_options(data_dir: Path, upload_root: Path) -> dict[str, Any]:
    return {
        "audio_roots": [(data_dir / "audio").resolve(), upload_root],
        "audio_hosts": ["127.0.0.1", f"127.0.0.1:{HTTP_PORT}"],
        "workers": 1,
        "retry_backoff_s": 0.5,
        "retry_backoff_max_s": 4.0,
        "upload_max_attempts": 8,
        "timeout_s": 10.0,
    }


def _letters(stack: EmbeddedStack, role: str) -> list[Letter]:
    s = stack.settings
    name = s.dead_letter_topic(s.interactions_topic if role == "interactions" else s.uploads_topic)
    return asyncio.run(read_letters(s.kafka_bootstrap, name, timeout_s=20))


def test_bad_messages_become_dead_letters_that_can_be_republished_after_a_fix(
    stack: EmbeddedStack, bus: Bus, data_dir: Path, upload_root: Path
) -> None:
    s = stack.settings
    tag = uuid.uuid4().hex[:8]
    junk = f'{{"event_id": "{tag}", "type": "pause"}}'.encode()
    bus.send(s.interactions_topic, f"u-{tag}", junk)
    bus.send(s.uploads_topic, f"t-{tag}", b"\xff not json " + tag.encode())
    later = upload_root / f"{tag}.ogg"  # named, allowed, but not there yet
    upload(bus, s, f"late-{tag}", later.as_uri())
    bus.flush()

    def mine(role: str) -> list[Letter]:
        return [lt for lt in _letters(stack, role) if tag.encode() in lt.value]

    (bad_play,) = poll("interaction dead letter", lambda: mine("interactions"), timeout_s=90)
    assert bad_play.value == junk and bad_play.key == f"u-{tag}"  # byte for byte
    assert bad_play.reason == "invalid" and bad_play.error == "InvalidMessage"
    assert bad_play.source_topic == s.topic(s.interactions_topic) and bad_play.attempts == 1
    assert "type" in bad_play.detail
    uploads = poll(
        "upload dead letters",
        lambda: len(mine("track-uploads")) == 2 and mine("track-uploads"),
        timeout_s=90,
    )
    by_key = {lt.key: lt for lt in uploads}
    assert by_key[f"t-{tag}"].reason == "invalid"
    missing = by_key[f"late-{tag}"]
    assert missing.reason.startswith("audio-") and str(later.name) in missing.detail
    assert headers_dict(missing.headers)[SOURCE_TOPIC] == s.topic(s.uploads_topic)
    text = stack.workers[0].metrics_text()
    assert 'resonate_dead_letters_total{reason="invalid",topic="interactions"}' in text

    # The fix: the file arrives. Re-publishing the letter makes the track searchable.
    shutil.copy(data_dir / "audio" / f"{CLIPS[0]}.ogg", later)
    assert asyncio.run(republish(s.kafka_bootstrap, choose(uploads, refs=[missing.ref]))) == 1
    assert f"late-{tag}" in wait_stored(s, [f"late-{tag}"], timeout_s=120)


@pytest.fixture()
def audio_host(data_dir: Path) -> Iterator[Callable[[], None]]:
    """Starts serving the clips on HTTP_PORT when called (the host is down until then)."""
    servers: list[http.server.ThreadingHTTPServer] = []

    def start() -> None:
        handler = functools.partial(
            http.server.SimpleHTTPRequestHandler, directory=str(data_dir / "audio")
        )
        server = http.server.ThreadingHTTPServer(("127.0.0.1", HTTP_PORT), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_an_upload_whose_audio_host_is_down_is_retried_until_it_is_back(
    stack: EmbeddedStack, bus: Bus, audio_host: Callable[[], None]
) -> None:
    s = stack.settings
    track = f"http-{uuid.uuid4().hex[:6]}"
    upload(bus, s, track, f"http://127.0.0.1:{HTTP_PORT}/{CLIPS[1]}.ogg")
    bus.flush()
    poll(
        "a retry",
        lambda: 'resonate_retries_total{reason="audio-' in stack.workers[0].metrics_text(),
        timeout_s=90,
    )
    audio_host()  # the host comes back
    assert track in wait_stored(s, [track], timeout_s=120)


def _metric(stack: EmbeddedStack, needle: str) -> bool:
    return needle in stack.workers[0].metrics_text()


def test_triton_and_milvus_outages_lose_no_upload_and_lists_still_come(
    stack: EmbeddedStack, bus: Bus, data_dir: Path
) -> None:
    s = stack.settings
    tag = uuid.uuid4().hex[:6]
    triton, milvus = stack.components["triton"], stack.components["milvus"]

    triton.kill()
    during_triton = [f"{tag}-t{i}" for i in range(2)]
    for i, tid in enumerate(during_triton):
        upload(bus, s, tid, clip_uri(data_dir, CLIPS[i]))
    bus.flush()
    poll(
        "the upload path waiting for Triton",
        lambda: _metric(stack, 'resonate_dependency_up{dependency="triton"} 0.0'),
        timeout_s=90,
    )
    triton.start()

    milvus.kill()
    during_milvus = [f"{tag}-m{i}" for i in range(2)]
    for i, tid in enumerate(during_milvus):
        upload(bus, s, tid, clip_uri(data_dir, CLIPS[2 + i]))
    bus.flush()
    # Plays are still answered while Milvus is away (co-plays and popularity), and say so.
    user = f"u-{tag}"
    eid = play(bus, s, user, CLIPS[0], "play", datetime.now(UTC))
    rec = answer(bus, eid, timeout_s=120)
    assert rec.user_id == user
    poll(
        "the upload path waiting for Milvus",
        lambda: _metric(stack, 'resonate_dependency_up{dependency="milvus"} 0.0'),
        timeout_s=90,
    )
    assert _metric(stack, 'resonate_events_total{outcome="no-audio",topic="refresh"}')
    milvus.start()

    stored = wait_stored(s, during_triton + during_milvus, timeout_s=240)
    assert sorted(stored) == sorted(during_triton + during_milvus)
    eid = play(bus, s, user, CLIPS[1], "play", datetime.now(UTC) + timedelta(seconds=1))
    assert answer(bus, eid, timeout_s=120).items
    assert not [
        lt for lt in _letters(stack, "track-uploads") if lt.key and lt.key.startswith(tag)
    ]  # waited out, not given up on
