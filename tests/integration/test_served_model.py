"""A trained sequence model served in the embedded stack and used by the fusion agent.

A synthetic log with a strict order (``seq-00 -> seq-01 -> ... -> seq-29 -> seq-00``) is
trained with ``resonate train``; the stack serves it from Triton next to MusiCNN. The
tracks have no audio at all: only the sequence, co-play and popularity paths can find them.
Then a newer artifact version is dropped into the folder and later recommendations carry it
without restarting anything.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from infra.cli import app as cli
from infra.demo import Bus
from infra.stack import EmbeddedStack
from models.convert_musicnn import MUSICNN_CARD
from models.fusion_weights import builtin
from schemas.settings import Settings
from serving.user_encoder_client import UserEncoderClient
from tests.integration.events import answer, play

N_TRACKS = 30
SEQ_REASON = "fits what you have been playing"


def track(i: int) -> str:
    return f"seq-{i % N_TRACKS:02d}"


def write_log(path: Path, *, users: int = 200, length: int = 12, seed: int = 0) -> None:
    """Each listener plays a run of consecutive tracks, with random skips in between."""
    rng = random.Random(seed)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    rows: list[dict[str, str]] = []
    for u in range(users):
        start = rng.randrange(N_TRACKS)
        for k in range(length):
            at = t0 + timedelta(minutes=20 * u + k)
            rows.append(event(f"{u}-{k}", "play", f"u{u}", track(start + k), at))
            if rng.random() < 0.2:
                skipped = track(rng.randrange(N_TRACKS))
                at_skip = at + timedelta(seconds=30)
                rows.append(event(f"{u}-{k}s", "skip", f"u{u}", skipped, at_skip))
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def event(eid: str, kind: str, user: str, track_id: str, at: datetime) -> dict[str, str]:
    """One line of the public ``interactions`` format."""
    return {
        "event_id": eid,
        "type": kind,
        "user_id": user,
        "track_id": track_id,
        "occurred_at": at.isoformat(),
    }


def publish_copy(src: Path, root: Path, version: str) -> Path:
    """A newer version of an artifact, published atomically (temp folder, then rename)."""
    tmp = root / f".tmp-{version}"
    shutil.copytree(src, tmp)
    card = json.loads((tmp / "card.json").read_text())
    card.update(version=version, created_at_s=time.time())
    (tmp / "card.json").write_text(json.dumps(card))
    os.rename(tmp, root / version)
    return root / version


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("served")
    log_path = folder / "events.jsonl"
    write_log(log_path)
    out = folder / "models"
    t0 = time.monotonic()
    res = CliRunner().invoke(
        cli,
        [
            "train", "--dataset", "events", "--path", str(log_path), "--out", str(out),
            "--epochs", "4", "--max-len", "20", "--batch-size", "32", "--lr", "0.005",
        ],
    )  # fmt: skip
    assert res.exit_code == 0, res.output + repr(res.exception)
    versions = [p for p in out.iterdir() if not p.name.startswith(".")]
    assert len(versions) == 1, versions
    card = json.loads((versions[0] / "card.json").read_text())
    assert card["n_items"] == N_TRACKS and card["L"] == 20 and card["dataset"] == "events"
    assert card["metrics"]["valid"]["NDCG@10"] > 0.5, card  # the order is easy to learn
    print(f"trained in {time.monotonic() - t0:.1f} s")
    return versions[0]


@pytest.fixture(scope="module")
def stack_options(trained: Path) -> dict[str, Any]:
    return {"workers": 1, "user_model_dir": trained.parent}


def served(s: Settings, history: list[str]) -> tuple[list[tuple[str, float]], str]:
    async def go() -> tuple[list[tuple[str, float]], str]:
        async with UserEncoderClient(
            url=s.triton_url, model_name=s.user_model_name, timeout_s=10
        ) as c:
            return await c.recommend(history, 10)

    return asyncio.run(go())


def test_fusion_recommends_the_models_next_tracks(
    stack: EmbeddedStack, bus: Bus, trained: Path
) -> None:
    s = stack.settings
    version = json.loads((trained / "card.json").read_text())["version"]
    history = [track(3), track(4), track(5)]
    predicted, got_version = served(s, history)
    assert got_version == version
    assert predicted[0][0] == track(6), predicted  # the model learnt the order
    user = f"u-{uuid.uuid4().hex[:6]}"
    t0 = datetime.now(UTC)
    for i, t in enumerate(history):
        eid = play(bus, s, user, t, "play", t0 + timedelta(seconds=i))
    rec = answer(bus, eid, timeout_s=90)
    want = f"{s.model_version}+{MUSICNN_CARD.version}+{builtin().version}+{version}"
    assert rec.model_version == want
    ids = [i.track_id for i in rec.items]
    assert not set(history) & set(ids)
    assert ids[0] == track(6), ids
    assert rec.items[0].reason == SEQ_REASON
    assert {p for p, _ in predicted[:3]} <= set(ids), (ids, predicted)
    text = stack.workers[0].metrics_text()
    assert 'resonate_user_encoder_calls_total{outcome="ok"}' in text


def test_a_newer_version_is_used_without_restart(
    stack: EmbeddedStack, bus: Bus, trained: Path
) -> None:
    s = stack.settings
    new = publish_copy(trained, trained.parent, "sasrec-99990101000000")
    user = f"u-{uuid.uuid4().hex[:6]}"
    t0 = datetime.now(UTC)
    want = f"{s.model_version}+{MUSICNN_CARD.version}+{builtin().version}+{new.name}"
    deadline = time.monotonic() + 60
    seen: list[str] = []
    i = 0
    while time.monotonic() < deadline:
        eid = play(bus, s, user, track(10 + i), "play", t0 + timedelta(seconds=i))
        rec = answer(bus, eid, timeout_s=60)
        seen.append(rec.model_version)
        if rec.model_version == want:
            break
        i += 1
        time.sleep(1.0)
    assert seen[-1] == want, seen
    ids = [it.track_id for it in rec.items]
    assert track(11 + i) in ids, ids
