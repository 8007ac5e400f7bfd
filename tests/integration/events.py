"""Publishing interactions and awaiting their recommendations, as a platform would."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from datetime import datetime

from infra.demo import Bus
from schemas.events import Interaction, Recommendation
from schemas.settings import Settings
from serving.milvus_store import MilvusError, TrackRow, TrackStore


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


def answers(bus: Bus, event_ids: set[str], timeout_s: float = 60) -> dict[str, Recommendation]:
    """The recommendations triggered by ``event_ids``; fails naming the missing ones."""
    got: dict[str, Recommendation] = {}
    for rec in bus.recommendations(timeout_s):
        if rec.source_event_id in event_ids:
            got[rec.source_event_id] = rec
            if len(got) == len(event_ids):
                return got
    missing = sorted(event_ids - set(got))
    raise AssertionError(f"no recommendation within {timeout_s} s for events {missing}")


def answer(bus: Bus, event_id: str, timeout_s: float = 60) -> Recommendation:
    """The recommendation triggered by one event."""
    return answers(bus, {event_id}, timeout_s)[event_id]


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
