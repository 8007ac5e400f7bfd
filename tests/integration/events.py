"""Driving the embedded stack as a platform would: its settings, uploads, interactions and
the recommendations they trigger."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from infra.demo import Bus
from schemas.events import Interaction, ListKind, Recommendation, TrackUpload
from schemas.settings import Settings
from serving.milvus_schema import MilvusError, TrackRow
from serving.milvus_store import TrackStore

T = TypeVar("T")


def stack_settings(run_dir: Path, weights_path: Path, **fields: Any) -> Settings:
    """Settings of an embedded stack on fresh topics and collection; ``fields`` override."""
    tag = uuid.uuid4().hex[:6]
    defaults: dict[str, Any] = {
        "topic_prefix": f"t{tag}-",
        "milvus_collection": f"tracks_{tag}",
        "api_port": 0,  # a free port: never the configured one another run may hold
    }
    return Settings(run_dir=run_dir, weights_path=weights_path, **{**defaults, **fields})


def clip_uri(data_dir: Path, clip_id: str) -> str:
    """file:// URI of one of the real clips."""
    return (data_dir / "audio" / f"{clip_id}.ogg").resolve().as_uri()


def upload(
    bus: Bus,
    s: Settings,
    track_id: str,
    audio_uri: str,
    *,
    uploaded_at: datetime | None = None,
    **meta: str,
) -> None:
    """Publish one track upload keyed by track id; ``bus.flush()`` after the batch."""
    ev = TrackUpload(
        event_id=uuid.uuid4().hex,
        track_id=track_id,
        audio_uri=audio_uri,
        uploaded_at=uploaded_at or datetime.now(UTC),
        **meta,
    )
    bus.send(s.uploads_topic, track_id, ev.model_dump_json().encode())


def play(bus: Bus, s: Settings, user: str, track: str, kind: str, at: datetime) -> str:
    """Publish one interaction keyed by user; returns its event id."""
    ev = Interaction.model_validate(
        {
            "event_id": uuid.uuid4().hex,
            "type": kind,
            "user_id": user,
            "track_id": track,
            "occurred_at": at,
        }
    )
    bus.send(s.interactions_topic, user, ev.model_dump_json().encode())
    bus.flush()
    return ev.event_id


def answers(
    bus: Bus, event_ids: set[str], timeout_s: float = 60, kind: ListKind = ListKind.NEW
) -> dict[str, Recommendation]:
    """The list of ``kind`` answering each of ``event_ids`` (a list answers every event
    folded into it, ``Recommendation.event_ids``); fails naming the missing ones."""
    got: dict[str, Recommendation] = {}
    for rec in bus.recommendations(timeout_s):
        if rec.kind is not kind:
            continue
        for eid in event_ids.intersection(rec.event_ids):
            got[eid] = rec
        if len(got) == len(event_ids):
            return got
    missing = sorted(event_ids - set(got))
    raise AssertionError(f"no recommendation within {timeout_s} s for events {missing}")


def answer(
    bus: Bus, event_id: str, timeout_s: float = 60, kind: ListKind = ListKind.NEW
) -> Recommendation:
    """The recommendation of ``kind`` triggered by one event."""
    return answers(bus, {event_id}, timeout_s, kind)[event_id]


def wait_stored(s: Settings, ids: Sequence[str], *, timeout_s: float = 300) -> dict[str, TrackRow]:
    """Poll Milvus until every id is stored (the collection appears with the first upload)."""
    rows: dict[str, TrackRow] = {}
    with TrackStore(uri=s.milvus_uri, collection=s.milvus_collection, dim=200) as store:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                rows = store.get(list(ids))
            except MilvusError:
                rows = {}
            if len(rows) == len(ids):
                break
            time.sleep(0.5)
    return rows


def poll(what: str, fn: Callable[[], T | None], *, timeout_s: float = 60) -> T:
    """``fn()`` until it returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout_s} s (last: {last!r})")
