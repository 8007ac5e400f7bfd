"""`resonate replay`'s machinery on the real stack: a tiny log whose next track is obvious.

Twenty listeners play the session a -> b -> c -> d -> e in the training period; four test
listeners, known from two other tracks, play the same session in the test period. Each of
their plays after the first is predictable from the co-plays the stack learnt online, so the
live lists must hit; the offline counterpart scores exactly the same events; and a track new
in the test period, uploaded as a real clip, is counted when shown.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from infra.replay.plan import plan_30music
from infra.replay.run import ReplayOptions, _replay, _upload, cold_start, live_scored
from infra.stack import EmbeddedStack
from models.fusion_rule import MixWeights
from models.fusion_weights import Taste
from models.recsys.counterpart import counterpart
from schemas.events import ListKind


@pytest.fixture(scope="module")
def stack_options(data_dir: Path) -> dict[str, Any]:
    return {"audio_roots": [(data_dir / "audio").resolve()], "workers": 1, "top_k": 20}


def _log(tmp_path: Path) -> Path:
    rows = ["UserId\tSessionId\tItemId\tTime\tArtistId"]
    t = 1_400_000_000
    session = ["a", "b", "c", "d", "e"]
    for u in range(20):
        for k, item in enumerate(session):
            rows.append(f"w{u}\tw{u}\t{item}\t{t + 300 * u + 200 * k}\tart-{item}")
    for u in range(4):  # known listeners: two training plays of other tracks
        for k, item in enumerate(["x", "y"]):
            rows.append(f"v{u}\tv{u}\t{item}\t{t + 300 * u + 200 * k}\tart-{item}")
    for u in range(4):  # test period: the session, then a track nobody played before
        for k, item in enumerate([*session, "new"]):
            rows.append(f"v{u}\tV{u}\t{item}\t{t + 30_000 + 300 * u + 200 * k}\tart-{item}")
    path = tmp_path / "tiny.txt"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_replay_hits_the_obvious_next_track_and_pairs_with_offline(
    stack: EmbeddedStack, tmp_path: Path, data_dir: Path
) -> None:
    clip = sorted((data_dir / "audio").glob("*.ogg"))[0]
    plan = plan_30music(_log(tmp_path), clips=[clip], n_audio=1)
    assert plan.uploads == {"new": clip}
    assert _upload(stack.settings, plan, timeout_s=120)["searchable"] == 1
    opts = ReplayOptions(path=Path("tiny.txt"), speedup=3000.0, answer_timeout_s=15.0)
    result = asyncio.run(_replay(stack.settings, plan, opts))

    assert result.answered == result.sent == len(plan.events)
    live = live_scored(plan, result)
    assert live.events == len(plan.scored) == len(plan.data.test) > 0
    # b..e after a..d: the co-plays of the listener's last track name the next one
    assert live.summary["HR@20"].mean > 0.5, live.summary
    mix = MixWeights(audio=0.3, collab=0.2, popularity=0.05, fresh=0.05, sequence=0.45)
    offline = counterpart(plan.data, mix, None, taste=Taste(), window=50)["offline-excl"]
    assert offline.listeners == live.listeners  # the same events, listener by listener
    assert offline.summary["HR@20"].mean > 0.5
    cs = cold_start(plan, result)
    assert cs["plays_of_uploaded_tracks"] == 4
    assert cs["test_lists_with_upload"] > 0  # a fresh upload is shown
    assert all("fusion-" in v for v in result.stats.versions)  # weights named in every list
    # Both kinds of list served, each event answered by one of each.
    assert set(result.stats.by_kind) == {"new", "mix"}
    assert live_scored(plan, result, ListKind.MIX).events == live.events
