"""Scale-out is partitions plus workers: two workers share the load; a crashed one's
partitions and user state move to the survivor."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from infra.demo import Bus
from infra.stack import EmbeddedStack
from schemas.events import TrackUpload
from schemas.settings import Settings
from tests.integration.events import answers, play, wait_stored

CLIPS = [
    "singularity-music__Nebula__0",
    "singularity-music__Nebula__1",
    "asc-music__frontiers__0",
    "asc-music__frontiers__1",
    "fretsonfire-songs-sectoid__Feelings__0",
    "fretsonfire-songs-sectoid__Feelings__1",
]


def _ok_events(stack: EmbeddedStack, index: int) -> float:
    for line in stack.workers[index].metrics_text().splitlines():
        if line.startswith('resonate_events_total{outcome="ok",topic="interactions"}'):
            return float(line.split()[-1])
    return 0.0


@pytest.fixture(scope="module")
def stack2(
    tmp_path_factory: pytest.TempPathFactory, data_dir: Path, weights_path: Path
) -> Iterator[EmbeddedStack]:
    settings = Settings(
        run_dir=tmp_path_factory.mktemp("stack2"),
        weights_path=weights_path,
        topic_prefix=f"s{uuid.uuid4().hex[:6]}-",
        audio_roots=[(data_dir / "audio").resolve()],
        workers=2,
        partitions=4,
    )
    with EmbeddedStack(settings=settings) as st:
        yield st


def test_two_workers_share_partitions_and_survive_a_crash(
    stack2: EmbeddedStack, data_dir: Path
) -> None:
    s = stack2.settings
    bus = Bus(s)
    try:
        now = datetime.now(UTC)
        for clip in CLIPS:
            ev = TrackUpload(
                event_id=uuid.uuid4().hex,
                track_id=clip,
                audio_uri=(data_dir / "audio" / f"{clip}.ogg").resolve().as_uri(),
                uploaded_at=now,
            )
            bus.send(s.uploads_topic, clip, ev.model_dump_json().encode())
        bus.flush()
        assert len(wait_stored(s, CLIPS, timeout_s=180)) == len(CLIPS)

        users = [f"u{i}-{uuid.uuid4().hex[:4]}" for i in range(12)]
        first = {play(bus, s, u, CLIPS[0], "play", now) for u in users}
        answers(bus, first)
        # Both workers consumed interactions: the keys spread over partitions they share.
        assert _ok_events(stack2, 0) > 0 and _ok_events(stack2, 1) > 0

        stack2.stop_worker(1, kill=True)
        later = now + timedelta(seconds=10)
        second = {play(bus, s, u, CLIPS[2], "play", later): u for u in users}
        # The survivor takes over after the session timeout and rebuilds the dead
        # worker's user state from the changelog before it answers.
        recs = answers(bus, set(second), timeout_s=240)
        for rec in recs.values():
            ids = [i.track_id for i in rec.items]
            assert CLIPS[0] not in ids and CLIPS[2] not in ids, ids
    finally:
        bus.close()
