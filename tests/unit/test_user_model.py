"""The servable user (sequence) encoder: export, TorchScript parity, serving logic, fusion."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from models.recsys.data import load_events
from models.recsys.dmmhyrec import DMMHyRec, DMMHyRecConfig
from models.recsys.export_user import (
    export_artifact,
    latest_artifact,
    load_artifact,
    new_version,
)
from models.recsys.sasrec import SASRec, SASRecConfig
from schemas.events import InteractionType
from schemas.settings import Settings
from serving.user_model import NoUserModel, UserModel
from streams.candidates import VectorCache
from streams.catalog import Catalog
from streams.clients import sequence_candidates
from streams.fusion import SEQUENCE_WEIGHTS
from streams.lists import rank_listener
from streams.metrics import Metrics
from streams.rank import Candidate, rank
from streams.state import HistoryItem, UserState

VOCAB = [f"t{i:02d}" for i in range(12)]


def _model(seed: int = 0, max_len: int = 8) -> SASRec:
    torch.manual_seed(seed)
    return SASRec(len(VOCAB), SASRecConfig(max_len=max_len)).eval()


def _seq(rows: list[list[int]], length: int = 8) -> torch.Tensor:
    out = torch.zeros(len(rows), length, dtype=torch.int64)
    for b, r in enumerate(rows):
        out[b, length - len(r) :] = torch.tensor(r)
    return out


def test_torchscript_matches_eager(tmp_path: Path) -> None:
    model = _model()
    folder = export_artifact(model, VOCAB, tmp_path, dataset="unit", version="sasrec-1")
    art = load_artifact(folder)
    assert art.version == "sasrec-1" and art.vocab == VOCAB
    assert art.card["L"] == 8 and art.card["n_items"] == 12
    for rows in ([[1]], [[3, 4, 5], [1, 2, 3, 4, 5, 6, 7, 8], [12]], [[2, 2, 2]] * 5):
        x = _seq(rows)
        with torch.no_grad():
            want = model.last_logits(x)
            got = art.module(x)
        assert got.shape == (len(rows), 12)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_dmmhyrec_torchscript_matches_eager_on_left_padded_histories(tmp_path: Path) -> None:
    torch.manual_seed(0)
    content = (torch.rand(len(VOCAB), 5) > 0.5).float()  # baked into the artifact
    model = DMMHyRec(len(VOCAB), content, 0, DMMHyRecConfig(max_len=8)).eval()
    model.set_warm(torch.arange(len(VOCAB)) < 9)  # the last 3 tracks: content only
    art = load_artifact(export_artifact(model, VOCAB, tmp_path, dataset="unit"))
    assert art.card["model"] == "dmmhyrec" and art.version.startswith("dmmhyrec-")
    for rows in ([[1]], [[3, 4, 5], [1, 2, 3, 4, 5, 6, 7, 8], [12]], [[10, 11, 2]] * 3):
        right = torch.zeros(len(rows), 8, dtype=torch.int64)  # the model's own padding
        for b, r in enumerate(rows):
            right[b, : len(r)] = torch.tensor(r)
        with torch.no_grad():
            want = model.scores(right)
            got = art.module(_seq(rows))
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_export_is_atomic_and_latest_is_newest(tmp_path: Path) -> None:
    assert latest_artifact(tmp_path / "missing") is None
    export_artifact(_model(), VOCAB, tmp_path, dataset="unit", version="sasrec-a")
    (tmp_path / ".tmp-half-written").mkdir()  # a writer in progress is never picked
    (tmp_path / "junk").mkdir()
    second = export_artifact(_model(1), VOCAB, tmp_path, dataset="unit", version="sasrec-b")
    assert latest_artifact(tmp_path) == second
    with pytest.raises(FileExistsError):
        export_artifact(_model(), VOCAB, tmp_path, dataset="unit", version="sasrec-b")
    with pytest.raises(ValueError):
        export_artifact(_model(), VOCAB[:3], tmp_path, dataset="unit")
    now = datetime(2026, 11, 22, 3, 4, 5, tzinfo=UTC)
    (tmp_path / "sasrec-20261122030405").mkdir()
    assert new_version(tmp_path, now=now) == "sasrec-20261122030405-2"


def test_load_events_keeps_positives_in_time_order(tmp_path: Path) -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    rows = []
    # u1 out of file order, with a skip; u2 has too few positives.
    for k, (user, track, kind, dt) in enumerate(
        [
            ("u1", "b", "play", 2),
            ("u1", "a", "play", 1),
            ("u1", "x", "skip", 3),
            ("u1", "c", "like", 4),
            ("u1", "d", "play", 5),
            ("u2", "a", "play", 1),
            ("u2", "b", "play", 2),
        ]
    ):
        at = (t0 + timedelta(seconds=dt)).isoformat()
        ev = {"event_id": str(k), "type": kind, "user_id": user, "track_id": track}
        rows.append(json.dumps({**ev, "occurred_at": at}))
    rows.append("{not json")
    path = tmp_path / "ev.jsonl"
    path.write_text("\n".join(rows) + "\n")
    data = load_events(path, view="positives")
    assert data.user_ids == ["u1"]
    assert data.item_ids == ["a", "b", "c", "d"]  # the skipped "x" is not an item
    assert data.train == [[0, 1]] and data.valid[0].target == 2 and data.test[0].target == 3


def test_user_model_ranks_excludes_history_and_hot_reloads(tmp_path: Path) -> None:
    model = _model()
    export_artifact(model, VOCAB, tmp_path, dataset="unit", version="sasrec-1")
    um = UserModel(tmp_path, top_n=5, poll_s=0.0)
    ids, scores, version = um.recommend(["", "t02", "unknown", "t03"])
    assert version == "sasrec-1" and len(ids) == 5 == len(scores)
    assert not {"t02", "t03"} & set(ids)
    with torch.no_grad():
        ref = model.last_logits(_seq([[3, 4]]))[0].numpy()
    ref[[2, 3]] = -np.inf
    order = np.argsort(-ref, kind="stable")[:5]
    assert ids == [VOCAB[j] for j in order]
    np.testing.assert_allclose(scores, ref[order], atol=1e-5)
    assert um.recommend(["nope", ""])[0] == []  # nothing known: nothing to say
    # A newer version is picked up by the next call; a broken one is ignored.
    time.sleep(0.01)
    export_artifact(_model(5), VOCAB, tmp_path, dataset="unit", version="sasrec-2")
    assert um.recommend(["t02"])[2] == "sasrec-2"
    broken = tmp_path / "sasrec-3"
    broken.mkdir()
    for f in ("model.pt", "vocab.json"):
        (broken / f).write_text("garbage")
    (broken / "card.json").write_text(json.dumps({"created_at_s": time.time() + 10}))
    assert um.recommend(["t02"])[2] == "sasrec-2"


def test_user_model_without_artifact_raises(tmp_path: Path) -> None:
    with pytest.raises(NoUserModel):
        UserModel(tmp_path).recommend(["a"])


def test_rank_with_sequence_component_explains_it() -> None:
    items = rank(
        [
            Candidate(track_id="seq", sequence=1.0),
            Candidate(track_id="aud", audio=0.9),
            Candidate(track_id="pop", popularity=10),
        ],
        exclude=set(),
        k=3,
        max_per_artist=2,
        w=SEQUENCE_WEIGHTS,
    )
    assert [i.track_id for i in items] == ["seq", "aud", "pop"]
    assert items[0].reason == "fits what you have been playing"


def test_recommend_adds_sequence_candidates_without_audio() -> None:
    state = UserState(
        user_id="u",
        recent=(HistoryItem(track_id="a", type=InteractionType.PLAY, at_ms=1),),
    )
    ranked = rank_listener(
        state,
        [],
        cache=VectorCache(),
        catalog=Catalog(),
        popular=[],
        fresh=[],
        k=3,
        max_per_artist=2,
        now_ms=10,
        weights=SEQUENCE_WEIGHTS,
        sequence=[("b", 5.0), ("c", 1.0), ("a", 0.5)],
    )
    assert [i.track_id for i in ranked.items] == ["b", "c"]  # "a" was heard
    assert ranked.source == "collab-pop+sequence"


@dataclass
class _FakeLazy:
    client: Any
    user_encoder_down_until: float = 0.0

    async def user_encoder(self) -> Any:
        return self.client


class _Client:
    def __init__(self, fail: bool) -> None:
        self.fail = fail
        self.calls: list[list[str]] = []

    async def recommend(self, history: list[str], n: int) -> tuple[list[tuple[str, float]], str]:
        self.calls.append(history)
        if self.fail:
            raise RuntimeError("down")
        return [("z", 1.0)], "sasrec-9"


def _deps(factory: Any) -> Any:
    from models.convert_musicnn import MUSICNN_CARD
    from streams.clients import Deps

    return Deps(
        settings=Settings(),
        card=MUSICNN_CARD,
        metrics=Metrics(),
        store_factory=lambda: None,  # type: ignore[arg-type, return-value]
        encoder_factory=lambda: None,  # type: ignore[arg-type, return-value]
        user_encoder_factory=factory,
    )


def test_sequence_candidates_use_positives_and_fall_back() -> None:
    state = UserState(
        user_id="u",
        recent=(
            HistoryItem(track_id="a", type=InteractionType.PLAY, at_ms=1),
            HistoryItem(track_id="s", type=InteractionType.SKIP, at_ms=2),
            HistoryItem(track_id="b", type=InteractionType.LIKE, at_ms=3),
        ),
    )
    ok = _Client(fail=False)
    deps = _deps(lambda: ok)
    got = asyncio.run(sequence_candidates(state, deps, _FakeLazy(ok)))  # type: ignore[arg-type]
    assert got == ([("z", 1.0)], "sasrec-9") and ok.calls == [["a", "b"]]

    bad = _Client(fail=True)
    deps = _deps(lambda: bad)
    lazy = _FakeLazy(bad)
    assert asyncio.run(sequence_candidates(state, deps, lazy)) == ([], "")  # type: ignore[arg-type]
    # Backing off: the next refresh does not wait on a failing server.
    assert asyncio.run(sequence_candidates(state, deps, lazy)) == ([], "")  # type: ignore[arg-type]
    assert len(bad.calls) == 1
    assert deps.metrics.user_encoder_calls.labels(outcome="error")._value.get() == 1
    assert deps.metrics.user_encoder_calls.labels(outcome="skipped")._value.get() == 1
    # Not configured: no call at all (training-free fusion, as before).
    assert asyncio.run(sequence_candidates(state, _deps(None), lazy)) == ([], "")  # type: ignore[arg-type]


def test_triton_child_serves_the_user_encoder_only_when_configured(tmp_path: Path) -> None:
    from infra.stack import settings_env
    from infra.triton_proc import TritonProcess
    from infra.triton_server import parse_args

    ports = {"http_port": 1, "grpc_port": 2, "metrics_port": 3, "log_path": tmp_path / "t.log"}
    plain = TritonProcess(factory="m:f", **ports)  # type: ignore[arg-type]
    assert plain.model_names() == ["musicnn"] and "--user-model-dir" not in plain.command()
    both = TritonProcess(factory="m:f", user_model_dir=tmp_path, user_top_n=7, **ports)  # type: ignore[arg-type]
    assert both.model_names() == ["musicnn", "user_encoder"]
    args = parse_args(both.command()[3:])
    assert args.user_model_dir == tmp_path and args.user_top_n == 7
    # Unset (the default) never reaches a worker as the string "None".
    assert "RESONATE_USER_MODEL_DIR" not in settings_env(Settings())
    env = settings_env(Settings(user_model_dir=tmp_path))
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        assert Settings().user_model_dir == tmp_path


def test_train_command_rejects_unknown_dataset(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from infra.cli import app

    res = CliRunner().invoke(
        app, ["train", "--dataset", "nope", "--path", "x", "--out", str(tmp_path)]
    )
    assert res.exit_code != 0
