"""Scale-out is partitions plus workers: two workers share the load of one topic set, and
the survivor of a crash takes over the dead worker's partitions and user state."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from infra.demo import Bus
from infra.stack import EmbeddedStack
from tests.integration.events import answers, clip_uri, play, upload, wait_stored

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
def stack_options(data_dir: Path) -> dict[str, Any]:
    return {"audio_roots": [(data_dir / "audio").resolve()], "workers": 2, "partitions": 4}


def test_two_workers_share_partitions_and_survive_a_crash(
    stack: EmbeddedStack, bus: Bus, data_dir: Path
) -> None:
    s = stack.settings
    now = datetime.now(UTC)
    for clip in CLIPS:
        upload(bus, s, clip, clip_uri(data_dir, clip), uploaded_at=now)
    bus.flush()
    assert len(wait_stored(s, CLIPS, timeout_s=180)) == len(CLIPS)

    users = [f"u{i}-{uuid.uuid4().hex[:4]}" for i in range(12)]
    first = {play(bus, s, u, CLIPS[0], "play", now) for u in users}
    answers(bus, first)
    # Both workers consumed interactions: the keys spread over partitions they share.
    assert _ok_events(stack, 0) > 0 and _ok_events(stack, 1) > 0

    # A crash (SIGKILL, within Faust's ~3 s commit interval, so the dead worker may have
    # committed nothing): the survivor takes over its partitions (session timeout 10 s),
    # recovers their user state from the changelog and answers every user.
    stack.stop_worker(1, kill=True)
    second = {play(bus, s, u, CLIPS[2], "play", now + timedelta(seconds=10)): u for u in users}
    got = answers(bus, set(second), timeout_s=120)
    for eid, rec in got.items():
        ids = [i.track_id for i in rec.items]
        assert rec.user_id == second[eid]
        # Only a recovered state still knows the first play: it stays excluded.
        assert CLIPS[0] not in ids and CLIPS[2] not in ids, (rec.user_id, ids)
