"""The worker's own steps in process: CPU per interaction of decode, fold, refresh, encode.

``python -m infra.bench.hotpath [--events 20000] [--batch 100] [--profile out.prof]``
runs the interaction path of a worker (``streams.pipeline`` without Faust) over the bench's
session workload: each batch's records decoded by the topic's codec, folded by
``fold_batch`` into a dict, the delta applied to the catalog, the touched listeners
refreshed by the worker's ``Refresher`` (candidates, one ranking pass, two kinds of list)
and each list encoded as the producer would. No broker, no Milvus: audio neighbours come
from a brute-force search over random unit vectors (:class:`ExactStore`, inside the
"audio" step with the taste vectors), so what this measures is Resonate's Python, not the
framework's or the services'.

What it is for: a change to the hot path measured in seconds, side by side with the code
before it (run it from two checkouts, alternating), before ``resonate bench`` measures it
on Kafka. It prints CPU-ms per interaction per step and writes them as JSON (``--out``).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import logging
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from infra.cli_common import cli_settings
from models.convert_musicnn import MUSICNN_CARD
from schemas.event_time import InputLimits
from schemas.events import Interaction, Recommendation
from schemas.settings import Settings
from serving.milvus_schema import TrackRow
from streams.candidates import VectorCache
from streams.catalog import Catalog
from streams.clients import Clients, Deps
from streams.codec import PydanticSchema
from streams.fold import Incoming, fold_batch
from streams.metrics import Metrics
from streams.refresh import Refresher
from streams.runtime import tune_gc
from streams.state import UserState

from .load import SessionWorkload

log = logging.getLogger(__name__)

STEPS = ("decode", "fold", "audio", "candidates", "rank", "emit")


class ExactStore:
    """Audio neighbours by exact cosine over fixed random vectors (a benchmark's stand-in
    for Milvus: the hot path's Python is measured, not a vector index)."""

    def __init__(self, rows: dict[str, TrackRow]) -> None:
        self.rows = rows
        self.ids = list(rows)
        self.matrix = np.stack([np.asarray(r.embedding, np.float32) for r in rows.values()])

    def __enter__(self) -> ExactStore:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def ensure_collection(self) -> None:
        return None

    def get(self, ids: Sequence[str]) -> dict[str, TrackRow]:
        return {t: self.rows[t] for t in ids if t in self.rows}

    def search_many(self, vectors: Sequence[Any], *, k: int) -> list[list[tuple[str, float]]]:
        sims = np.stack([np.asarray(v, np.float32) for v in vectors]) @ self.matrix.T
        top = np.argsort(-sims, axis=1)[:, :k]
        return [[(self.ids[j], float(sims[i, j])) for j in row] for i, row in enumerate(top)]


def _store(audio: int, dim: int, artists: int, seed: int) -> ExactStore:
    rng = np.random.default_rng(seed)
    vecs = rng.normal(size=(audio, dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    return ExactStore(
        {
            f"audio-{i}": TrackRow(
                track_id=f"audio-{i}",
                embedding=vecs[i],
                artist_id=f"artist-{i % artists}",
                genre="",
                release_date="",
                uploaded_at_ms=0,
                top_tags=(),
                model_version="bench",
            )
            for i in range(audio)
        }
    )


def _records(work: SessionWorkload, n: int, artists: int) -> list[bytes]:
    now = datetime.now(UTC).isoformat()
    out = []
    for user, track, kind in work.batch(n):
        body: dict[str, Any] = {
            "event_id": uuid.uuid4().hex,
            "type": kind,
            "user_id": user,
            "track_id": track,
            "occurred_at": now,
        }
        if artists:
            body["artist_id"] = f"artist-{hash(track) % artists}"
        out.append(json.dumps(body).encode())
    return out


class _Message:
    """What the codec reads of a Kafka record."""

    __slots__ = ("value", "key", "headers")

    def __init__(self, value: bytes) -> None:
        self.value, self.key, self.headers = value, None, None


async def run(o: argparse.Namespace, s: Settings) -> dict[str, Any]:
    """Drive ``o.events`` interactions through the steps; CPU-ms per interaction."""
    metrics = Metrics()
    store = _store(o.audio, MUSICNN_CARD.embed_dim, o.artists or 1, o.seed)
    deps = Deps(
        settings=s,
        card=MUSICNN_CARD,
        metrics=metrics,
        store_factory=lambda: store,  # type: ignore[arg-type,return-value]
        encoder_factory=lambda: None,  # type: ignore[arg-type,return-value]
    )
    catalog, cache = Catalog(ttl_s=s.catalog_lists_ttl_s), VectorCache(capacity=s.vector_cache_size)
    refresher = Refresher(deps=deps, clients=Clients(deps), catalog=catalog, cache=cache)
    tracks = store.ids + [f"track-{i}" for i in range(o.silent)]
    work = SessionWorkload(tracks=tracks, listeners=o.listeners, seed=o.seed)
    decode = PydanticSchema(Interaction, max_bytes=s.max_event_bytes)
    encode = PydanticSchema(Recommendation, max_bytes=s.max_record_bytes)
    table: dict[str, UserState] = {}
    cpu = dict.fromkeys(STEPS, 0.0)
    lists = 0

    async def send(uid: str, rec: Recommendation) -> None:
        nonlocal lists
        encode.dumps_value(None, rec, headers=None)  # type: ignore[arg-type]
        lists += 1

    limits = InputLimits.from_settings(s)
    if not o.default_gc:
        tune_gc(s)  # the worker's collector settings (streams/runtime.py)
    on_gc = metrics.time_gc()
    gc_s = 0.0
    done = 0
    prof = cProfile.Profile() if o.profile else None
    while done < o.warmup + o.events:
        if done >= o.warmup and prof is not None:
            prof.enable()
        measured = done >= o.warmup
        raw = _records(work, o.batch, o.artists)
        t0 = time.process_time()
        events = [decode.loads_value(None, _Message(r)) for r in raw]  # type: ignore[arg-type]
        t1 = time.process_time()
        folded = fold_batch(
            # One partition, offsets running on: a listener's offset guards against replays.
            [Incoming(e, 0, done + i) for i, e in enumerate(events)],
            get_state=table.get,
            put_state=lambda st, _: table.__setitem__(st.user_id, st),
            seq_len=s.seq_len,
            session_gap_s=s.session_gap_s,
            now_ms=int(time.time() * 1000),
            limits=limits,
            known_artists=catalog.artists,
        )
        if folded.delta is not None:
            catalog.apply(folded.delta)
        t2 = time.process_time()
        before, gc0 = _steps(metrics), _gc_seconds(metrics)
        await refresher.refresh(folded.listeners, send)
        after = _steps(metrics)
        if measured:
            # the collections during the refresh (inside the steps' times, as in a worker)
            gc_s += _gc_seconds(metrics) - gc0
            cpu["decode"] += t1 - t0
            cpu["fold"] += t2 - t1
            for step in STEPS[2:]:
                cpu[step] += after[step] - before[step]
        done += o.batch
    gc.callbacks.remove(on_gc)
    if prof is not None:
        prof.disable()
        prof.dump_stats(o.profile)
    per = {k: round(1000 * v / o.events, 4) for k, v in cpu.items()}
    return {
        "events": o.events,
        "batch": o.batch,
        "listeners": o.listeners,
        "lists_per_event": round(lists / (o.warmup + o.events), 3),
        "cpu_ms_per_event": per,
        "total_cpu_ms_per_event": round(sum(per.values()), 4),
        "of_which_gc_ms_per_event": round(1000 * gc_s / o.events, 4),
    }


def _gc_seconds(metrics: Metrics) -> float:
    get = metrics.registry.get_sample_value
    return sum(get("resonate_gc_seconds_total", {"generation": str(g)}) or 0.0 for g in range(3))


def _steps(metrics: Metrics) -> dict[str, float]:
    """Seconds each refresh step has taken so far (its histogram's sum; in process and
    without I/O, wall time is CPU time)."""
    get = metrics.registry.get_sample_value
    return {
        step: get("resonate_batch_step_seconds_sum", {"step": step}) or 0.0 for step in STEPS[2:]
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=20_000, help="interactions measured")
    p.add_argument("--warmup", type=int, default=5_000, help="interactions before measuring")
    p.add_argument("--batch", type=int, default=100, help="interactions per fold batch")
    p.add_argument("--listeners", type=int, default=2000)
    p.add_argument("--audio", type=int, default=2000, help="tracks with a vector")
    p.add_argument("--silent", type=int, default=2000, help="tracks without one")
    p.add_argument("--artists", type=int, default=300, help="0: interactions name none")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--default-gc", action="store_true", help="Python's collector pace")
    p.add_argument("--profile", type=Path, help="write cProfile stats here")
    p.add_argument("--out", type=Path, help="write the figures here (JSON)")
    o = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    # The worker's settings (RESONATE_*): its ranking parameters, kinds and collector pace.
    result = asyncio.run(run(o, cli_settings()))
    print(json.dumps(result, indent=1))
    if o.out is not None:
        o.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
