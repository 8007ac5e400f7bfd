"""`resonate replay`: a real log through the running system, scored beside its offline number.

Steps: build the replay of a 30Music slice (:mod:`infra.replay.plan`); make sure a sequence
model artifact trained on the slice's training period exists (train one if not); compute the
offline counterpart on the same events (:mod:`models.recsys.counterpart`); start an embedded
stack on fresh topics that serves that artifact, the fusion-weights artifact and MusiCNN,
with lists of 20 (``top_k``); upload the cold-start clips; send the log and keep the list
each scored event met (:mod:`infra.replay.drive`); score both sides with the same functions
(:mod:`models.recsys.prequential`) and write JSON (+ Markdown, :mod:`infra.replay.report`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import deque
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from infra.replay.drive import DriveResult, ListReader, drive
from infra.replay.plan import ReplayPlan, plan_30music
from models.fusion_weights import FusionArtifact, WeightsSource
from models.recsys.counterpart import (
    KIND_COUNTERPARTS,
    VARIANTS,
    ArtifactRec,
    LiveWindows,
    counterpart,
)
from models.recsys.prequential import METRICS, Scored, ratio_ci, score
from schemas.events import ListKind
from schemas.settings import Settings
from serving.kafka_security import KafkaSecurity

log = logging.getLogger(__name__)

LIST_LEN = 20
"""Items per list the replayed stack emits (HR@20 needs 20)."""


@dataclass(frozen=True, kw_only=True)
class ReplayOptions:
    """How to replay; durations in seconds."""

    path: Path
    listeners: int = 0  # 0 = every listener of the slice
    seed: int = 0
    speedup: float = 2000.0  # log seconds per wall second
    n_audio: int = 40  # new tracks given a real clip (cold start); 0 = none
    user_model_dir: Path | None = None  # artifact root; None = train one under run_dir
    train_seconds: float = 300.0  # wall-clock cap of that training
    answer_timeout_s: float = 10.0
    workers: int = 1


def ensure_user_model(opts: ReplayOptions, run_dir: Path) -> Path:
    """The artifact root to serve: the given one, or one trained on the slice (reused if a
    previous replay trained it)."""
    from models.recsys.export_user import latest_artifact, train_artifact

    if opts.user_model_dir is not None:
        if latest_artifact(opts.user_model_dir) is None:
            raise FileNotFoundError(f"no sequence-model artifact under {opts.user_model_dir}")
        return opts.user_model_dir
    root = (run_dir / "replay" / "user-model" / opts.path.stem).resolve()
    if latest_artifact(root) is None:
        log.info("training the sequence model on %s (cap %.0f s)", opts.path, opts.train_seconds)
        train_artifact("30music", opts.path, root, max_seconds=opts.train_seconds)
    return root


def _stack_settings(settings: Settings, model_root: Path, out_dir: Path) -> Settings:
    tag = uuid.uuid4().hex[:6]
    audio = (settings.data_dir / "audio").resolve()
    return settings.model_copy(
        update={
            "topic_prefix": f"replay{tag}-",
            "milvus_collection": f"replay_{tag}",
            "audio_roots": [*settings.audio_roots, audio],
            "run_dir": out_dir / "stack",
            "top_k": LIST_LEN,
            "user_model_dir": model_root,
            "api_enabled": False,
        }
    )


def _upload(settings: Settings, plan: ReplayPlan, *, timeout_s: float = 600.0) -> dict[str, Any]:
    """Upload the cold-start clips as their tracks (with the log's artist) and wait until
    they are searchable; returns counts and seconds."""
    from infra.demo import Bus, wait_searchable
    from models.convert_musicnn import MUSICNN_CARD
    from schemas.events import TrackUpload

    if not plan.uploads:
        return {"uploaded": 0}
    t0 = time.monotonic()
    bus = Bus(settings)
    try:
        for track, clip in plan.uploads.items():
            ev = TrackUpload(
                event_id=uuid.uuid4().hex,
                track_id=track,
                audio_uri=clip.resolve().as_uri(),
                title=clip.stem,
                artist_id=plan.artists.get(track) or None,
                uploaded_at=datetime.now(UTC),
            )
            bus.send(settings.uploads_topic, track, ev.model_dump_json().encode())
        bus.flush()
    finally:
        bus.close()
    seen = wait_searchable(
        settings, list(plan.uploads), MUSICNN_CARD.embed_dim, timeout_s=timeout_s
    )
    if len(seen) < len(plan.uploads):
        log.warning("%d of %d uploads searchable", len(seen), len(plan.uploads))
    return {
        "uploaded": len(plan.uploads),
        "searchable": len(seen),
        "seconds": round(time.monotonic() - t0, 1),
    }


async def _replay(settings: Settings, plan: ReplayPlan, opts: ReplayOptions) -> DriveResult:
    s = settings
    reader = ListReader(
        bootstrap=s.kafka_bootstrap,
        topic=s.topic(s.recommendations_topic),
        fetch_max_wait_ms=s.fetch_max_wait_ms,
        uploads=plan.uploads,
        kinds=[str(k) for k in s.list_kinds],
        security=KafkaSecurity.from_settings(s),
    )
    await reader.start()
    stop = asyncio.Event()
    task = asyncio.create_task(reader.run(stop))
    try:
        return await drive(
            bootstrap=s.kafka_bootstrap,
            interactions=s.topic(s.interactions_topic),
            reader=reader,
            plan=plan,
            speedup=opts.speedup,
            answer_timeout_s=opts.answer_timeout_s,
            security=KafkaSecurity.from_settings(s),
        )
    finally:
        stop.set()
        await task
        await reader.stop()


def live_windows(plan: ReplayPlan, window: int) -> LiveWindows:
    """Per offline test case, the track ids the agent's window holds when it is scored (the
    listener's last ``window`` events of the whole log, in the order they are sent)."""
    recent: dict[str, deque[str]] = {}
    windows: list[list[str]] = [[] for _ in plan.data.test]
    for ev in plan.events:
        q = recent.setdefault(ev.user, deque(maxlen=window))
        if ev.case is not None:
            windows[ev.case] = list(q)
        q.append(ev.track)
    return LiveWindows(windows=windows, artists=plan.artists)


def served_counterpart(
    plan: ReplayPlan,
    settings: Settings,
    *,
    fusion: FusionArtifact,
    sequence: ArtifactRec,
    seed: int,
) -> dict[str, Scored]:
    """The replay's offline counterpart (:func:`models.recsys.counterpart.counterpart`) on
    ``plan``'s events, configured as the stack serves: ``fusion``'s sequence mix and taste,
    the served ``sequence`` model, the agent's window and diversity cap, its live windows.
    One home, so a replay and its rescoring (:mod:`infra.replay.rescore`) compute the same."""
    return counterpart(
        plan.data,
        fusion.sequence.weights,
        sequence,
        taste=fusion.taste,
        window=settings.seq_len,
        live=live_windows(plan, settings.seq_len),
        max_per_artist=settings.max_per_artist,
        seed=seed,
    )


def live_scored(plan: ReplayPlan, result: DriveResult, kind: ListKind = ListKind.NEW) -> Scored:
    """The live figures of one kind of list: each scored event against the list of that
    kind it met."""
    pairs = []
    for ob in result.observations:
        ev = plan.events[ob.index]
        if ev.case is not None:
            pairs.append((ev.user, ob.lists.get(kind), ev.track))
    return score(pairs)


def cold_start(plan: ReplayPlan, result: DriveResult) -> dict[str, Any]:
    """New-track exposure: lists showing an uploaded track, and plays of them that were hits
    (in the `new` list: an uploaded track is new to everyone)."""
    plays = [ob for ob in result.observations if plan.events[ob.index].track in plan.uploads]
    hits = sum(1 for ob in plays if plan.events[ob.index].track in ob.lists.get(ListKind.NEW, ()))
    st = result.stats
    return {
        "uploaded_tracks": len(plan.uploads),
        "clips": {t: p.name for t, p in plan.uploads.items()},
        "test_lists": st.lists_test,
        "test_lists_with_upload": st.with_upload_test,
        "share_of_lists_with_upload": round(st.with_upload_test / max(1, st.lists_test), 4),
        "uploaded_tracks_shown": len(st.shown_uploads),
        "plays_of_uploaded_tracks": len(plays),
        "hits_on_uploaded_tracks": hits,
    }


def run_replay(settings: Settings, opts: ReplayOptions, out: Path) -> dict[str, Any]:
    """Replay, score both sides, write ``out`` (JSON); returns the report."""
    import pymilvus  # noqa: F401 -- it configures its loggers on import: quiet them after

    from infra.stack import EmbeddedStack
    from models.recsys.export_user import latest_artifact

    # The clients' per-request INFO lines and the "collection not found" errors of the wait
    # for the first upload would bury the replay's own log.
    for noisy in ("kafka", "aiokafka", "pymilvus"):
        logging.getLogger(noisy).setLevel(
            logging.WARNING if noisy != "pymilvus" else logging.CRITICAL
        )
    clips = sorted((settings.data_dir / "audio").glob("*.ogg")) if opts.n_audio else []
    plan = plan_30music(
        opts.path, listeners=opts.listeners, seed=opts.seed, clips=clips, n_audio=opts.n_audio
    )
    log.info(
        "replay of %s: %d events, %d scored, %d uploads",
        plan.name,
        len(plan.events),
        len(plan.scored),
        len(plan.uploads),
    )
    model_root = ensure_user_model(opts, settings.run_dir)
    artifact = latest_artifact(model_root)
    assert artifact is not None  # ensure_user_model checked
    fusion, fusion_version = WeightsSource(dir=settings.fusion_weights_dir).current()
    sequence = ArtifactRec(artifact)
    offline = served_counterpart(plan, settings, fusion=fusion, sequence=sequence, seed=opts.seed)
    out_dir = out.resolve().parent
    s = _stack_settings(settings, model_root, out_dir / f"replay-{plan.name}")
    s = s.model_copy(update={"workers": opts.workers})
    with EmbeddedStack(settings=s) as stack:
        uploads = _upload(stack.settings, plan)
        result = asyncio.run(_replay(stack.settings, plan, opts))
    live = {kind: live_scored(plan, result, kind) for kind in s.list_kinds}
    report = _report(plan, opts, live, offline, result)
    report["uploads"] = uploads
    report["artifacts"] = {
        "pipeline": s.model_version,
        "fusion_weights": fusion_version,
        "sequence_model": sequence.version,
        "sequence_model_path": str(artifact),
        "fusion_mix": fusion.sequence.weights.model_dump(),
    }
    report["lists_naming"] = _naming(result, fusion_version, sequence.version)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    return report


def _naming(result: DriveResult, fusion: str, sequence: str) -> dict[str, Any]:
    """How many lists name the fusion weights and the sequence model in ``model_version``."""
    versions = result.stats.versions
    total = sum(versions.values())
    return {
        "lists": total,
        "with_fusion_version": sum(n for v, n in versions.items() if fusion in v),
        "with_sequence_version": sum(n for v, n in versions.items() if sequence in v),
        "model_versions": dict(versions.most_common(5)),
    }


def ratios_of(live: Scored, offline: dict[str, Scored], names: Any, seed: int) -> dict[str, Any]:
    """Live over each named offline variant, with the paired bootstrap interval."""
    out = {}
    for name in names:
        per = {m: ratio_ci(live, offline[name], m, seed=seed) for m in METRICS}
        out[name] = {m: {"ratio": r, "low": lo, "high": hi} for m, (r, lo, hi) in per.items()}
    return out


def _report(
    plan: ReplayPlan,
    opts: ReplayOptions,
    live: dict[ListKind, Scored],
    offline: dict[str, Scored],
    result: DriveResult,
) -> dict[str, Any]:
    """The report; ``live``, ``ratio`` and ``per_event.live`` are the `new` list's (as in
    reports written before kinds existed), ``kinds`` holds every kind beside its counterparts."""
    scored = [ob for ob in result.observations if plan.events[ob.index].case is not None]
    new = live.get(ListKind.NEW) or next(iter(live.values()))
    plain = [n for n, v in VARIANTS.items() if not v.familiar]
    kinds = {
        str(kind): {
            "live": {m: f.model_dump() for m, f in sc.summary.items()},
            "counterparts": list(KIND_COUNTERPARTS[kind]),
            "ratio": ratios_of(sc, offline, KIND_COUNTERPARTS[kind], opts.seed),
            "scored_without_list": sum(kind not in ob.lists for ob in scored),
        }
        for kind, sc in live.items()
    }
    return {
        "slice": plan.name,
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(opts).items()},
        "finished": time.time(),
        "log": {
            "events": len(plan.events),
            "listeners": len({e.user for e in plan.events}),
            "test_period_events": sum(e.test_period for e in plan.events),
            "scored_events": new.events,
            "scored_listeners": len(set(new.listeners)),
        },
        "drive": {
            "sent": result.sent,
            "answered": result.answered,
            "seconds": result.seconds,
            "lists": result.stats.lists,
            "scored_without_list": sum(ListKind.NEW not in ob.lists for ob in scored),
            "lists_by_kind": dict(result.stats.by_kind),
            "scored_stale": sum(ob.stale for ob in scored),
            "mean_wait_s": round(sum(ob.waited_s for ob in scored) / max(1, len(scored)), 4),
        },
        "live": {m: f.model_dump() for m, f in new.summary.items()},
        "offline": {
            name: {m: f.model_dump() for m, f in sc.summary.items()} for name, sc in offline.items()
        },
        "ratio": ratios_of(new, offline, plain, opts.seed),
        "kinds": kinds,
        "cold_start": cold_start(plan, result),
        # Per event (time order), so slices can be pooled and compared listener by listener.
        "per_event": {
            name: {"listeners": sc.listeners, **sc.per_event}
            for name, sc in {
                "live": new,
                **{f"live-{k}": v for k, v in live.items()},
                **offline,
            }.items()
        },
    }
