"""`resonate demo`: upload a catalog, simulate listeners, print live recommendations.

Talks to the stack only the way a platform would: JSON events on Kafka in,
recommendations read back from the output topic by a plain consumer.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from schemas.events import Interaction, InteractionType, ListKind, Recommendation, TrackUpload
from schemas.settings import Settings

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = {".wav", ".ogg", ".flac", ".mp3", ".m4a", ".aiff", ".au"}


@dataclass(frozen=True)
class CatalogTrack:
    """One track of the demo catalog."""

    track_id: str
    path: Path
    artist_id: str
    genre: str


def synth_catalog(folder: Path, *, per_style: int = 6, seconds: float = 12.0) -> list[CatalogTrack]:
    """A small catalog of synthetic music in three styles (so the demo needs no data)."""
    import soundfile as sf

    sr = 22_050
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    t = np.arange(int(sr * seconds)) / sr
    out: list[CatalogTrack] = []
    for style in ("ambient", "techno", "rock"):
        for i in range(per_style):
            root = 110.0 * 2 ** (rng.integers(0, 12) / 12)
            if style == "ambient":  # slow swelling chords
                y = sum(np.sin(2 * np.pi * root * r * t) for r in (1, 1.25, 1.5, 2))
                y = y * (0.6 + 0.4 * np.sin(2 * np.pi * 0.2 * t))
            elif style == "techno":  # four-on-the-floor kick, hats, bass
                bpm = 120 + 4 * i
                beat = (t * bpm / 60) % 1
                y = np.sin(2 * np.pi * 55 * t) * np.exp(-beat * 12) * 3
                y = y + 0.3 * rng.standard_normal(t.size) * (((t * bpm / 30) % 1) < 0.05)
                y = y + 0.5 * np.sign(np.sin(2 * np.pi * root / 2 * t))
            else:  # distorted power chords with a backbeat
                y = np.tanh(6 * (np.sin(2 * np.pi * root * t) + np.sin(2 * np.pi * root * 1.5 * t)))
                y = y + 0.6 * rng.standard_normal(t.size) * (((t * 2) % 1) < 0.08)
            y = 0.3 * y / (np.max(np.abs(y)) + 1e-9)
            path = folder / f"{style}-{i}.wav"
            sf.write(path, y.astype(np.float32), sr)
            out.append(
                CatalogTrack(
                    track_id=f"{style}-{i}",
                    path=path,
                    artist_id=f"{style}-artist-{i % 3}",
                    genre=style,
                )
            )
    return out


def folder_catalog(folder: Path) -> list[CatalogTrack]:
    """Every audio file below ``folder``; a sub-folder name stands in for the artist.

    Files directly in ``folder`` have no known artist (so no per-artist cap applies).
    """
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    return [
        CatalogTrack(
            track_id=p.stem,
            path=p.resolve(),
            artist_id=p.parent.name if p.parent != folder else "",
            genre="",
        )
        for p in files
    ]


def now() -> datetime:
    return datetime.now(UTC)


class Bus:
    """A plain kafka-python producer and a group-less consumer of the recommendations."""

    def __init__(self, settings: Settings) -> None:
        from kafka import KafkaConsumer, KafkaProducer, TopicPartition

        from serving.kafka_security import KafkaSecurity

        self.s = settings
        security = KafkaSecurity.from_settings(settings).kafka_python()
        self.producer = KafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap, acks="all", **security
        )
        topic = settings.topic(settings.recommendations_topic)
        # No consumer group: the platform's reader shares its position with nobody.
        self.consumer = KafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap,
            enable_auto_commit=False,
            fetch_max_wait_ms=settings.fetch_max_wait_ms,
            **security,
        )
        parts = self.consumer.partitions_for_topic(topic) or set(range(settings.partitions))
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        self.consumer.assign(tps)
        self.consumer.seek_to_end()
        # seek_to_end only marks the partitions for a reset, done at the first poll: lists
        # sent before then would be skipped. Resolve the positions now.
        for tp in tps:
            self.consumer.position(tp)

    def send(self, topic: str, key: str, value: bytes) -> None:
        self.producer.send(self.s.topic(topic), key=key.encode(), value=value)

    def flush(self) -> None:
        self.producer.flush(timeout=30)

    def recommendations(self, timeout_s: float) -> Iterable[Recommendation]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            batch = self.consumer.poll(timeout_ms=200)
            for records in batch.values():
                for r in records:
                    yield Recommendation.model_validate_json(r.value)

    def close(self) -> None:
        self.producer.close(timeout=5)
        self.consumer.close()


def upload_all(bus: Bus, tracks: list[CatalogTrack]) -> dict[str, float]:
    """Publish one upload event per track; returns track -> send time."""
    sent: dict[str, float] = {}
    for tr in tracks:
        ev = TrackUpload(
            event_id=uuid.uuid4().hex,
            track_id=tr.track_id,
            audio_uri=tr.path.resolve().as_uri(),
            title=tr.track_id,
            artist_id=tr.artist_id or None,
            genre=tr.genre or None,
            uploaded_at=now(),
        )
        bus.send(bus.s.uploads_topic, tr.track_id, ev.model_dump_json().encode())
        sent[tr.track_id] = time.time()
    bus.flush()
    return sent


def wait_searchable(
    settings: Settings,
    ids: list[str],
    dim: int,
    *,
    timeout_s: float,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, float]:
    """Poll Milvus until every id is stored; returns id -> time first seen.

    ``on_progress(stored, total)`` is called after every poll."""
    from serving.milvus_store import TrackStore

    seen: dict[str, float] = {}
    with TrackStore.from_settings(settings, dim=dim) as store:
        deadline = time.monotonic() + timeout_s
        while len(seen) < len(ids) and time.monotonic() < deadline:
            try:
                found = store.get([i for i in ids if i not in seen])
            except Exception:  # the collection appears with the first upload
                found = {}
            for tid in found:
                seen[tid] = time.time()
            if on_progress is not None:
                on_progress(len(seen), len(ids))
            time.sleep(0.05)
    return seen


def taste_groups(catalog: list[CatalogTrack], n: int) -> list[list[CatalogTrack]]:
    """Tracks grouped by genre (else artist); without either, n runs of sorted names."""
    by: dict[str, list[CatalogTrack]] = {}
    for tr in catalog:
        if tr.genre or tr.artist_id:
            by.setdefault(tr.genre or tr.artist_id, []).append(tr)
    if len(by) > 1:
        return list(by.values())
    size = max(1, -(-len(catalog) // max(1, n)))
    return [catalog[i : i + size] for i in range(0, len(catalog), size)]


def interaction(user: str, track: str, kind: InteractionType) -> Interaction:
    return Interaction(
        event_id=uuid.uuid4().hex,
        type=kind,
        user_id=user,
        track_id=track,
        occurred_at=now(),
        listened_ms=25_000 if kind is not InteractionType.SKIP else 4_000,
        track_duration_ms=30_000,
    )


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    qs = statistics.quantiles(values, n=20, method="inclusive") if len(values) > 1 else values * 19
    return {"n": len(values), "median_s": statistics.median(values), "p95_s": qs[18]}


class DemoReport(Protocol):
    """What the demo tells a person (``infra.demo_view.RichReport`` draws it with rich)."""

    def catalog_progress(self, stored: int, total: int) -> None: ...

    def note(self, text: str) -> None: ...

    def played(self, user: str, kind: str, track: str) -> None: ...

    def listed(self, rec: Recommendation) -> None: ...

    def summary(self, result: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class EchoReport:
    """Plain lines through ``echo``."""

    echo: Callable[[str], None]

    def catalog_progress(self, stored: int, total: int) -> None:
        pass

    def note(self, text: str) -> None:
        self.echo(text)

    def played(self, user: str, kind: str, track: str) -> None:
        self.echo(f"  {user} {kind}s {track}")

    def listed(self, rec: Recommendation) -> None:
        top = "; ".join(f"{i.track_id} ({i.score:.2f}, {i.reason})" for i in rec.items[:5])
        self.echo(f"→ {rec.user_id}: {top}")

    def summary(self, result: dict[str, Any]) -> None:
        self.echo(json.dumps(result, indent=2))


def run_demo(
    settings: Settings,
    *,
    catalog: list[CatalogTrack],
    dim: int,
    echo: Callable[[str], None] = print,
    listeners: int = 4,
    plays_each: int = 4,
    report: DemoReport | None = None,
) -> dict[str, Any]:
    """Upload, listen, report; returns the latencies measured (also written to run_dir)."""
    out_ = report or EchoReport(echo)
    bus = Bus(settings)
    try:
        # Most of the catalog arrives as one burst (throughput-bound on a CPU); the last
        # tracks are uploaded one at a time, as a new release would be.
        burst, singles = catalog[:-2], catalog[-2:]
        out_.note(f"uploading {len(burst)} tracks at once ...")
        sent = upload_all(bus, burst)
        seen = wait_searchable(
            settings, list(sent), dim, timeout_s=300, on_progress=out_.catalog_progress
        )
        burst_lat = [seen[t] - sent[t] for t in seen]
        out_.note(f"{len(seen)}/{len(sent)} tracks searchable in Milvus")
        single_lat: list[float] = []
        for tr in singles:
            one = upload_all(bus, [tr])
            got = wait_searchable(settings, list(one), dim, timeout_s=120)
            single_lat += [got[t] - one[t] for t in got]
            out_.note(f"new upload {tr.track_id} searchable after {single_lat[-1]:.2f} s")
        groups = taste_groups(catalog, listeners)
        rng = np.random.default_rng(1)
        event_lat: list[float] = []
        pending: dict[str, float] = {}
        for step in range(plays_each):
            for u in range(listeners):
                user = f"listener-{u}"
                taste = groups[u % len(groups)]
                other = groups[(u + 1) % len(groups)]
                kind = InteractionType.SKIP if step == plays_each - 1 else InteractionType.PLAY
                pool = other if kind is InteractionType.SKIP else taste
                track = pool[int(rng.integers(0, len(pool)))].track_id
                ev = interaction(user, track, kind)
                bus.send(settings.interactions_topic, user, ev.model_dump_json().encode())
                pending[ev.event_id] = time.time()
                out_.played(user, kind.value, track)
            bus.flush()
            for rec in _collect(bus, pending, timeout_s=30):
                event_lat.append(time.time() - pending.pop(rec.source_event_id or "", time.time()))
                out_.listed(rec)
        result = {
            "tracks": len(catalog),
            "upload_to_searchable_burst": percentiles(burst_lat),
            "upload_to_searchable_single": percentiles(single_lat),
            "event_to_recommendation": percentiles(event_lat),
        }
        out = settings.run_dir / "demo-latency.json"
        out.write_text(json.dumps(result, indent=2))
        out_.summary(result)
        return result
    finally:
        bus.close()


def _collect(bus: Bus, pending: dict[str, float], *, timeout_s: float) -> list[Recommendation]:
    """Recommendations answering the pending events (stop when all answered)."""
    got: list[Recommendation] = []
    want = set(pending)
    for rec in bus.recommendations(timeout_s):
        # The table shows the `new` lists; a `mix` list answers the same events.
        if rec.kind is ListKind.NEW and rec.source_event_id in want:
            got.append(rec)
            want.discard(rec.source_event_id)
        if not want:
            break
    return got
