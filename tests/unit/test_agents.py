"""The Faust agents with ``agent.test_context()`` and memory tables (no broker)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import faust
import pytest

from models.convert_musicnn import MUSICNN_CARD
from schemas.events import Interaction, InteractionType, ListKind, Recommendation
from schemas.settings import Settings
from streams.app import build_app
from streams.clients import Deps
from streams.metrics import Metrics
from streams.state import CatalogDelta, UserState


class NoAudioStore:
    """A Milvus stand-in holding no vectors (unit tests only; integration uses Milvus)."""

    def __enter__(self) -> NoAudioStore:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def ensure_collection(self) -> None:
        return None

    def get(self, ids: Any) -> dict[str, Any]:
        return {}

    def search_many(self, vectors: Any, **kw: Any) -> list[Any]:
        raise AssertionError("no listener has audio here: nothing to search")


def _never() -> Any:
    raise AssertionError("this test must not reach Triton")


@pytest.fixture()
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any, Any]]:
    """Captures what agents send to other topics instead of producing to a broker."""
    out: list[tuple[str, Any, Any]] = []

    async def send(
        self: faust.Topic, *, key: Any = None, value: Any = None, **kw: Any
    ) -> asyncio.Future[None]:
        out.append((self.get_topic_name(), key, value))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)  # "delivered", as a broker's acknowledgement would say
        return done

    monkeypatch.setattr(faust.Topic, "send", send)
    return out


@pytest.fixture()
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture()
def app(metrics: Metrics) -> Iterator[faust.App]:
    deps = Deps(
        settings=Settings(kafka_bootstrap="localhost:1", topic_prefix="unit-", seq_len=3),
        card=MUSICNN_CARD,
        metrics=metrics,
        store_factory=NoAudioStore,  # type: ignore[arg-type]
        encoder_factory=_never,
    )
    app = build_app(deps)
    app.finalize()
    app.conf.store = "memory://"
    yield app


T0 = datetime.now(UTC) - timedelta(minutes=5)


def _ev(i: int, user: str, track: str, kind: str = "play") -> Interaction:
    return Interaction.model_validate(
        {
            "event_id": f"e{i}",
            "type": kind,
            "user_id": user,
            "track_id": track,
            # Relative to now: the worker rejects event times more than a year old.
            "occurred_at": T0 + timedelta(seconds=i),
        }
    )


async def test_interactions_fold_answer_every_event_once_and_emit_one_delta_per_batch(
    app: faust.App, sent: list[tuple[str, Any, Any]]
) -> None:
    agent = app.agents["on_interactions"]
    users = app.tables["user-state"]
    async with agent.test_context() as a:
        await a.put(_ev(1, "u1", "t1"), key="u1")
        await a.put(_ev(2, "u1", "t2"), key="u1")
        await a.put(_ev(2, "u1", "t2"), key="u1")  # a producer's duplicate: counted once
        await a.put(_ev(3, "u1", "t3", "skip"), key="u1")
        await a.put(_ev(4, "u2", "t1"), key="u2")
        for _ in range(100):  # batches close after fold_wait_s; wait for the last list
            lists = [v for t, _, v in sent if t == "unit-recommendations"]
            if {e for r in lists for e in r.event_ids} == {"e1", "e2", "e3", "e4"}:
                break
            await asyncio.sleep(0.02)
    state = UserState.model_validate(users["u1"])
    assert [h.track_id for h in state.recent] == ["t1", "t2", "t3"]
    assert (state.plays, state.skips) == (2, 1)
    lists = [v for t, _, v in sent if t == "unit-recommendations"]
    assert {r.kind for r in lists} == set(ListKind)  # both kinds served by default
    for kind in ListKind:  # every event answered exactly once by a list of each kind
        answered = [e for r in lists if r.kind is kind for e in r.event_ids]
        assert sorted(answered) == ["e1", "e2", "e3", "e4"], kind
    assert all(
        isinstance(r, Recommendation) and r.source_event_id == r.event_ids[-1] for r in lists
    )
    u2 = next(r for r in lists if r.user_id == "u2" and r.kind is ListKind.NEW)
    assert u2.items and u2.items[0].track_id == "t2"  # co-played with t1 by u1, unheard
    deltas = [v for t, _, v in sent if t == "unit-track-deltas"]
    assert all(isinstance(d, CatalogDelta) for d in deltas) and len(deltas) <= 5
    plays: dict[str, int] = {}
    for d in deltas:
        for tid, n in d.plays.items():
            plays[tid] = plays.get(tid, 0) + n
    assert plays == {"t1": 2, "t2": 1}
    assert sum(d.skips.get("t3", 0) for d in deltas) == 1
    assert any(d.coplays.get("t1") == {"t2": 1} for d in deltas)


async def test_events_outside_the_time_window_are_rejected_counted_and_never_timed(
    app: faust.App, metrics: Metrics, sent: list[tuple[str, Any, Any]]
) -> None:
    agent = app.agents["on_interactions"]
    far = {"old": "0001-01-01T00:00:00Z", "future": "9999-12-31T00:00:00Z"}
    async with agent.test_context() as a:
        for eid, at in far.items():
            bad = _ev(0, "u9", "t9").model_copy(update={"event_id": eid})
            await a.put(bad.model_copy(update={"occurred_at": datetime.fromisoformat(at)}))
        await a.put(_ev(1, "u9", "t1"), key="u9")
        for _ in range(100):
            if any(t == "unit-recommendations" for t, _, _ in sent):
                break
            await asyncio.sleep(0.02)
    lists = [v for t, _, v in sent if t == "unit-recommendations"]
    assert [(r.kind, e) for r in lists for e in r.event_ids] == [(k, "e1") for k in ListKind]
    sample = metrics.registry.get_sample_value
    assert sample("resonate_events_total", {"topic": "interactions", "outcome": "rejected"}) == 2
    seconds = "resonate_event_to_recommendation_seconds"
    assert sample(f"{seconds}_count") == 1
    assert sample(f"{seconds}_sum") < 3600  # year 0001 would add 6.4e10 s
    state = UserState.model_validate(app.tables["user-state"]["u9"])
    assert [h.track_id for h in state.recent] == ["t1"]


class FakeEncoder:
    """Stands in for the Triton client in unit tests only (integration uses real Triton)."""

    calls: list[int] = []

    async def __aenter__(self) -> FakeEncoder:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def embed(self, patches: Any) -> tuple[Any, Any]:
        import numpy as np

        self.calls.append(patches.shape[0])
        n = patches.shape[0]
        emb = np.tile(patches.mean(axis=(1, 2))[:, None], (1, 200)).astype("float32") + 1
        tags = np.zeros((n, 50), "float32")
        tags[:, 3] = 1.0
        return emb, tags


class FakeStore:
    def __init__(self) -> None:
        self.rows: list[Any] = []

    def __enter__(self) -> FakeStore:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def ensure_collection(self) -> None:
        return None

    def upsert(self, rows: Any) -> int:
        self.rows.extend(rows)
        return len(rows)


async def test_upload_agent_batches_embeds_and_stores(
    tmp_path: Any, sent: list[tuple[str, Any, Any]]
) -> None:
    import numpy as np
    import soundfile as sf

    from schemas.events import TrackUpload

    root = tmp_path / "audio"
    root.mkdir()
    for i in range(2):
        t = np.arange(16_000 * 7) / 16_000
        sf.write(root / f"s{i}.wav", 0.2 * np.sin(2 * np.pi * (220 + 110 * i) * t), 16_000)
    store = FakeStore()
    encoder = FakeEncoder()
    encoder.calls = []
    metrics = Metrics()
    app = build_app(
        Deps(
            settings=Settings(kafka_bootstrap="localhost:1", audio_roots=[root]),
            card=MUSICNN_CARD,
            metrics=metrics,
            store_factory=lambda: store,  # type: ignore[arg-type,return-value]
            encoder_factory=lambda: encoder,  # type: ignore[arg-type,return-value]
        )
    )
    app.finalize()
    app.conf.store = "memory://"

    def up(i: int, uri: str) -> TrackUpload:
        return TrackUpload.model_validate(
            {
                "event_id": f"u{i}",
                "track_id": f"t{i}",
                "audio_uri": uri,
                "artist_id": "a",
                "uploaded_at": "2026-11-22T10:00:00Z",
            }
        )

    async with app.agents["on_upload"].test_context() as a:
        await a.put(up(0, (root / "s0.wav").as_uri()), key="t0")
        await a.put(up(1, (root / "s1.wav").as_uri()), key="t1")
        await a.put(up(2, "file:///etc/passwd"), key="t2")
        await a.put(up(3, (root / "s0.wav").as_uri()), key="t3")  # flushes the batch
        # The agent batches with stream.take(); give it a moment (decoding is slow the
        # first time in a fresh environment: librosa's numba code compiles then).
        for _ in range(600):
            if any(t.endswith("track-deltas") for t, _, _ in sent):
                break
            await asyncio.sleep(0.05)
    assert sorted(r.track_id for r in store.rows) == ["t0", "t1", "t3"]
    row = next(r for r in store.rows if r.track_id == "t0")
    assert abs(float(np.linalg.norm(row.embedding)) - 1.0) < 1e-5
    assert row.top_tags[0] == MUSICNN_CARD.tag_names[3]
    # Tag 3 is "indie", which models/genre.py folds into rock; no other genre tag fires.
    assert (row.audio_genre, row.audio_genre_confidence) == ("rock", 1.0)
    assert row.artist_id == "a" and row.uploaded_at_ms > 0
    assert sum(encoder.calls) == 3 * 2  # 7 s at 16 kHz = 2 patches per track
    text = metrics.registry.get_sample_value(
        "resonate_events_total", {"topic": "track-uploads", "outcome": "dead-lettered"}
    )
    assert text == 1.0
    letters = [(k, v) for t, k, v in sent if t == "track-uploads.dlq"]
    assert len(letters) == 1 and b"/etc/passwd" in letters[0][1]  # the original bytes
    deltas = [v for t, _, v in sent if t.endswith("track-deltas")]
    assert {tid for d in deltas for tid in d.uploads} == {"t0", "t1", "t3"}
    assert all(d.uploads[tid].artist_id == "a" for d in deltas for tid in d.uploads)


def _refresh_deps(**kw: Any) -> Deps:
    """A refresher's collaborators without audio: no Milvus vectors, no Triton."""
    return Deps(
        settings=Settings(kafka_bootstrap="localhost:1"),
        card=MUSICNN_CARD,
        metrics=Metrics(),
        store_factory=NoAudioStore,  # type: ignore[arg-type]
        encoder_factory=_never,
        **kw,
    )


def test_refresher_ranks_with_the_weights_artifact_in_force(tmp_path: Any) -> None:
    import shutil

    from models.fusion_weights import BUILTIN_DIR, WeightsSource, builtin
    from streams.candidates import VectorCache
    from streams.catalog import Catalog
    from streams.clients import Clients
    from streams.refresh import Refresher

    folder = tmp_path / "fusion"
    shutil.copytree(BUILTIN_DIR / builtin().version, folder / builtin().version)
    now = [0.0]
    deps = _refresh_deps(weights=WeightsSource(dir=folder, poll_s=1.0, clock=lambda: now[0]))
    r = Refresher(deps=deps, clients=Clients(deps), catalog=Catalog(), cache=VectorCache())
    version, base, _ = r.mixes()
    assert version == builtin().version and base.audio == builtin().base.weights.audio
    newer = folder / "fusion-99990101000000"
    shutil.copytree(folder / builtin().version, newer)
    text = (newer / "weights.json").read_text()
    (newer / "weights.json").write_text(
        text.replace(f'"{builtin().version}"', '"fusion-99990101000000"').replace(
            '"recency_decay": 0.85', '"recency_decay": 0.7'
        )
    )
    now[0] = 5.0  # past the poll interval: the newer version is picked up, no restart
    version, base, with_seq = r.mixes()
    assert version == "fusion-99990101000000"
    # the taste parameters travel in the artifact with the mixes
    assert base.recency_decay == with_seq.recency_decay == 0.7
    gauge = deps.metrics.registry.get_sample_value
    assert gauge("resonate_fusion_weights_info", {"version": version}) == 1.0
    assert gauge("resonate_fusion_weights_info", {"version": builtin().version}) is None


async def test_a_listener_whose_favourites_fail_still_gets_both_lists(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The `mix` pool failing for one listener is counted; that listener's mix list falls
    back to its new candidates, and every list of the batch is still sent."""
    import streams.refresh as refresh_mod
    from streams.candidates import VectorCache
    from streams.catalog import Catalog
    from streams.clients import Clients
    from streams.fold import Touched
    from streams.refresh import Refresher
    from streams.state import HistoryItem

    deps = _refresh_deps()
    catalog = Catalog(ttl_s=0.0)
    catalog.apply(CatalogDelta(delta_id="d", plays={"p1": 3, "p2": 2}))
    r = Refresher(deps=deps, clients=Clients(deps), catalog=catalog, cache=VectorCache())

    def broken(kind: ListKind, state: UserState, *a: Any, **kw: Any) -> Any:
        if state.user_id == "bad":
            raise RuntimeError("boom")
        return real(kind, state, *a, **kw)

    real = refresh_mod.kind_pool
    monkeypatch.setattr(refresh_mod, "kind_pool", broken)
    touched = []
    for uid in ("bad", "good"):
        ev = _ev(1 if uid == "bad" else 2, uid, "t1")
        st = UserState(
            user_id=uid,
            recent=(HistoryItem(track_id="t1", type=InteractionType.PLAY, at_ms=1),),
        )
        touched.append(Touched(state=st, events=[ev]))
    out: list[tuple[str, Recommendation]] = []

    async def send(key: str, rec: Recommendation) -> None:
        out.append((key, rec))

    await r.refresh(touched, send)
    assert [(k, rec.kind) for k, rec in out] == [
        (u, kind) for u in ("bad", "good") for kind in (ListKind.NEW, ListKind.MIX)
    ]
    bad = {rec.kind: [i.track_id for i in rec.items] for k, rec in out if k == "bad"}
    assert bad[ListKind.MIX] == bad[ListKind.NEW]  # no favourites, same candidates
    errors = deps.metrics.registry.get_sample_value(
        "resonate_events_total", {"topic": "refresh", "outcome": "error"}
    )
    assert errors == 1.0
