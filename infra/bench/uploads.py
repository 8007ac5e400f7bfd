"""The upload path measured: a burst's tracks/s and single-upload latency, beside the bare
decode + log-mel + encode rate of the same clips in one process (no Kafka, no Triton)."""

from __future__ import annotations

import logging
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from infra.demo import Bus
from models.convert_musicnn import MUSICNN_CARD
from schemas.events import TrackUpload
from schemas.settings import Settings
from serving.milvus_schema import MilvusError
from serving.milvus_store import TrackStore

log = logging.getLogger(__name__)


def bare_rate(clips: list[Path], settings: Settings) -> dict[str, float]:
    """Clips/s of decode + log-mel + MusiCNN in this process, the upload path's ceiling."""
    import torch

    from models.convert_musicnn import load_musicnn
    from streams.audio import prepare_audio

    model, card = load_musicnn(settings.weights_path)
    t0 = time.perf_counter()
    patches = 0
    for c in clips:
        a = prepare_audio(str(c), spec=card.frontend, max_seconds=settings.max_audio_s)
        with torch.inference_mode():
            model(torch.from_numpy(a.patches))
        patches += a.patches.shape[0]
    secs = time.perf_counter() - t0
    return {
        "clips": len(clips),
        "seconds": round(secs, 2),
        "clips_per_s": round(len(clips) / secs, 3),
        "ms_per_patch": round(1000 * secs / max(1, patches), 1),
    }


def _upload(bus: Bus, s: Settings, track_id: str, clip: Path) -> None:
    ev = TrackUpload(
        event_id=uuid.uuid4().hex,
        track_id=track_id,
        audio_uri=clip.resolve().as_uri(),
        title=clip.stem,
        artist_id=clip.stem.split("__")[0],
        uploaded_at=datetime.now(UTC),
    )
    bus.send(s.uploads_topic, track_id, ev.model_dump_json().encode())


def _wait_stored(store: TrackStore, ids: list[str], timeout_s: float) -> dict[str, float]:
    """Track id -> time it became searchable (polled every 20 ms)."""
    seen: dict[str, float] = {}
    deadline = time.monotonic() + timeout_s
    while len(seen) < len(ids) and time.monotonic() < deadline:
        try:
            found = store.get([t for t in ids if t not in seen])
        except MilvusError:
            found = {}
        now = time.time()
        for t in found:
            seen[t] = now
        time.sleep(0.02)
    return seen


def upload_path(bus: Bus, s: Settings, clips: list[Path], *, singles: int) -> dict[str, Any]:
    """Burst of every clip, then ``singles`` uploads one at a time."""
    with TrackStore.from_settings(s, dim=MUSICNN_CARD.embed_dim) as store:
        ids = [f"clip-{c.stem}" for c in clips]
        t0 = time.time()
        for tid, c in zip(ids, clips, strict=True):
            _upload(bus, s, tid, c)
        bus.flush()
        seen = _wait_stored(store, ids, timeout_s=600)
        burst_s = max(seen.values(), default=time.time()) - t0
        lat = []
        for i in range(singles):
            clip = clips[i % len(clips)]
            tid = f"single-{i}-{uuid.uuid4().hex[:6]}"
            t1 = time.time()
            _upload(bus, s, tid, clip)
            bus.flush()
            got = _wait_stored(store, [tid], timeout_s=60)
            if tid in got:
                lat.append(got[tid] - t1)
    arr = np.asarray(lat or [np.nan])
    return {
        "burst": {
            "tracks": len(ids),
            "stored": len(seen),
            "seconds": round(burst_s, 2),
            "tracks_per_s": round(len(seen) / max(1e-9, burst_s), 3),
        },
        "single": {
            "n": len(lat),
            "p50_s": round(float(np.nanpercentile(arr, 50)), 3),
            "p95_s": round(float(np.nanpercentile(arr, 95)), 3),
        },
        "clip_ids": ids,
    }
