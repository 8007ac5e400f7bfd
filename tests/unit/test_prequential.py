"""Prequential scoring, the replay plan and its offline counterpart, without a stack."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from infra.replay.plan import new_tracks, plan_30music
from models.fusion_rule import MixWeights
from models.fusion_weights import Taste
from models.recsys.counterpart import (
    VARIANTS,
    LiveWindows,
    counterpart,
    ranked_lists,
    served_hybrid,
)
from models.recsys.prequential import event_metrics, ratio_ci, score


def test_event_metrics_position_and_misses() -> None:
    ranked = [f"t{i}" for i in range(20)]
    assert event_metrics(ranked, "t0") == {"HR@10": 1.0, "HR@20": 1.0, "NDCG@10": 1.0, "MRR": 1.0}
    m = event_metrics(ranked, "t3")
    assert m["NDCG@10"] == pytest.approx(1 / math.log2(5)) and m["MRR"] == pytest.approx(0.25)
    m = event_metrics(ranked, "t15")  # in the 20, not in the 10
    assert (m["HR@10"], m["HR@20"], m["NDCG@10"]) == (0.0, 1.0, 0.0)
    assert m["MRR"] == pytest.approx(1 / 16)
    assert event_metrics(ranked, "other")["HR@20"] == 0.0
    assert event_metrics(None, "t0") == {"HR@10": 0.0, "HR@20": 0.0, "NDCG@10": 0.0, "MRR": 0.0}


def test_score_averages_within_listeners_first() -> None:
    # a: 3 events, all hits; b: 1 event, a miss -> over listeners 0.5, not 0.75 over events
    pairs = [("a", ["x"], "x")] * 3 + [("b", ["x"], "y")]
    s = score(pairs)
    assert s.events == 4
    assert s.summary["HR@20"].mean == pytest.approx(0.5)
    assert s.summary["HR@20"].listeners == 2


def test_ratio_is_paired_over_common_listeners() -> None:
    live = score([("a", ["x"], "x"), ("b", ["z"], "y"), ("c", ["x"], "x")])
    off = score([("a", ["x"], "x"), ("b", ["y"], "y"), ("c", ["x"], "x")])
    r, lo, hi = ratio_ci(live, off, "HR@20")
    assert r == pytest.approx(2 / 3) and lo <= r <= hi <= 1.0
    assert math.isnan(ratio_ci(live, score([("a", [], "x")]), "HR@20")[0])


def _slice(tmp_path: Path) -> Path:
    """A tiny 30Music-format log: every listener plays a -> b -> c -> d; a new track e appears
    in the test period only."""
    rows = ["UserId\tSessionId\tItemId\tTime\tArtistId"]
    t = 1_400_000_000
    for u in range(12):
        for k, item in enumerate("abcd"):
            rows.append(f"u{u}\ts{u}\t{item}\t{t + 600 * u + 60 * k}\tart-{item}")
    for u in range(12):  # test period: the same listeners replay c, d and play the new e
        for k, item in enumerate("cde"):
            rows.append(f"u{u}\tS{u}\t{item}\t{t + 40_000 + 600 * u + 60 * k}\tart-{item}")
    path = tmp_path / "slice.txt"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_plan_marks_the_offline_test_cases_in_time_order(tmp_path: Path) -> None:
    clips = [tmp_path / "c0.ogg", tmp_path / "c1.ogg"]
    plan = plan_30music(_slice(tmp_path), clips=clips, n_audio=2)
    times = [e.at_s for e in plan.events]
    assert times == sorted(times)
    scored = plan.scored
    assert [e.case for e in scored] == list(range(len(plan.data.test)))
    for e in scored:  # the plan's scored events are the offline cases, one for one
        case = plan.data.test[e.case or 0]
        assert plan.data.user_ids[case.user] == e.user
        assert plan.data.item_ids[case.target] == e.track
    assert all(e.track != "e" for e in scored)  # a track new in the test period is no case
    assert plan.uploads == {"e": clips[0]}  # the only new track gets a clip
    assert new_tracks(plan.events, 5) == ["e"]


def test_counterpart_scores_the_same_events_and_excluding_heard_costs_replays(
    tmp_path: Path,
) -> None:
    plan = plan_30music(_slice(tmp_path))
    mix = MixWeights(audio=0.3, collab=0.2, popularity=0.05, fresh=0.0, sequence=0.0)
    out = counterpart(plan.data, mix, None, taste=Taste(familiar_cooldown=1), window=50)
    assert set(out) == set(VARIANTS)
    for sc in out.values():
        assert sc.events == len(plan.scored)
    # Every test target is a replay of c or d, which co-plays predict: offline they are hits,
    # with heard tracks excluded they never can be.
    assert out["offline"].summary["HR@20"].mean == pytest.approx(1.0)
    assert out["offline-excl"].summary["HR@20"].mean == 0.0
    # The `mix` list brings them back: c and d were each played 2 events before.
    assert out["offline-mix-noaudio"].summary["HR@20"].mean == pytest.approx(1.0)
    # ... but not within the cool-down: 3 events, and neither has had it.
    held = counterpart(plan.data, mix, None, taste=Taste(familiar_cooldown=3), window=50)
    assert held["offline-mix-noaudio"].summary["HR@20"].mean == 0.0
    # ... nor from beyond the agent's recent window.
    far = counterpart(plan.data, mix, None, taste=Taste(familiar_cooldown=0), window=1)
    assert far["offline-mix-noaudio"].summary["HR@20"].mean == 0.0
    # The agent's window holds every track of the log: three plays the dataset drops (too
    # rare) pass the cool-down there, and the counterpart reads the same window.
    d = plan.data
    padded = LiveWindows(
        windows=[[d.item_ids[i] for i in c.history] + ["x", "y", "z"] for c in d.test],
        artists={},
    )
    held_live = counterpart(d, mix, None, taste=Taste(familiar_cooldown=3), window=50, live=padded)
    assert held_live["offline-mix-noaudio"].summary["HR@20"].mean == pytest.approx(1.0)
    # The agent's diversity rule, applied to the counterpart too: one artist, one item.
    one = LiveWindows(windows=padded.windows, artists={t: "same" for t in d.item_ids})
    hybrid = served_hybrid(d, mix, None, window=50)
    capped = ranked_lists(
        hybrid, d, VARIANTS["offline"], taste=Taste(), window=50, live=one, max_per_artist=1
    )
    assert capped and all(len(lst) == 1 for lst in capped)
    free = ranked_lists(hybrid, d, VARIANTS["offline"], taste=Taste(), window=50, live=one)
    assert all(len(lst) == len(d.item_ids) for lst in free)
    assert np.isfinite(out["offline"].summary["MRR"].ci95)


def test_live_windows_are_the_agents_last_events_before_each_case(tmp_path: Path) -> None:
    from infra.replay.run import live_windows

    plan = plan_30music(_slice(tmp_path))
    lw = live_windows(plan, 3)
    assert lw.artists["c"] == "art-c"
    for e in plan.scored:
        before = [x.track for x in plan.events[: plan.events.index(e)] if x.user == e.user]
        assert lw.windows[e.case or 0] == before[-3:]


def test_pooled_figures_weight_listeners_and_shrink_the_ci() -> None:
    from infra.replay.report import pooled

    a = {"mean": 0.2, "ci95": 0.1, "listeners": 10}
    b = {"mean": 0.5, "ci95": 0.1, "listeners": 30}
    p = pooled([a, b])
    assert p["mean"] == pytest.approx((0.2 * 10 + 0.5 * 30) / 40) and p["listeners"] == 40
    assert p["ci95"] == pytest.approx(math.sqrt(1.0 + 9.0) / 40)
    assert p["ci95"] < min(a["ci95"], b["ci95"])


def test_artifact_rec_scores_like_the_served_user_model(tmp_path: Path) -> None:
    """The offline counterpart reads the very artifact Triton serves: same scores per track
    id as ``serving.user_model.UserModel``, whatever the dataset's item order."""
    import torch

    from models.recsys.counterpart import ArtifactRec
    from models.recsys.data import Dataset
    from models.recsys.export_user import export_artifact
    from models.recsys.sasrec import SASRec, SASRecConfig
    from serving.user_model import UserModel

    vocab = [f"t{i:02d}" for i in range(12)]
    torch.manual_seed(0)
    model = SASRec(len(vocab), SASRecConfig(max_len=8)).eval()
    folder = export_artifact(model, vocab, tmp_path, dataset="unit", version="sasrec-1")
    items = [*reversed(vocab[2:]), "unknown"]  # another order, two tracks fewer, one new
    data = Dataset("d", len(items), items, ["u"], [[0, 1, 2]], [], [], exclude_history=False)
    rec = ArtifactRec(folder)
    rec.fit(data)
    history = ["t05", "t03", "t07"]
    offline = rec.score([[items.index(t) for t in history]])[0]
    assert offline[items.index("unknown")] == -np.inf
    ids, scores, version = UserModel(tmp_path).recommend(history)
    assert version == rec.version == "sasrec-1"
    for tid, sc in zip(ids, scores, strict=True):
        if tid in items:
            assert offline[items.index(tid)] == pytest.approx(float(sc), abs=1e-5)


def test_shadow_walks_the_plan_with_the_agents_functions(tmp_path: Path) -> None:
    """The in-process replica of the live ranking: cases found for both splits, both kinds
    ranked, the `new` list never showing a heard track."""
    from infra.replay.shadow import ShadowOptions, observed, shadow
    from schemas.event_time import InputLimits

    plan = plan_30music(_slice(tmp_path))
    assert sorted(observed(plan, "test").values()) == list(range(len(plan.data.test)))
    valid = observed(plan, "valid")
    assert len(valid) == len(plan.data.valid)
    for n, k in valid.items():  # each listener's last training play of its target
        case = plan.data.valid[k]
        assert not plan.events[n].test_period
        assert plan.events[n].track == plan.data.item_ids[case.target]

    class NoModel:  # a listener the sequence model knows nothing of
        def recommend(self, history: list[str]) -> tuple[list[str], np.ndarray, str]:
            return [], np.zeros(0, dtype=np.float32), ""

    o = ShadowOptions(
        k=20,
        top_n=80,
        max_per_artist=2,
        seq_len=50,
        session_gap_s=1800.0,
        limits=InputLimits(),
        overrides={"familiar_cooldown": 1},
    )
    figures = shadow(plan, NoModel(), "test", o)  # type: ignore[arg-type]
    assert set(figures) == {"new", "mix"}
    # Every target replays c or d, played 2 events before: never in a `new` list, brought
    # back by the `mix` one once out of a 1-event cool-down.
    assert figures["new"]["HR@20"]["mean"] == 0.0
    assert figures["mix"]["HR@20"]["mean"] == pytest.approx(1.0)


def test_shadow_top_n_is_parsed_and_defaults_to_what_the_agent_asks_for() -> None:
    from infra.replay.shadow import parse_args, shadow_options
    from schemas.settings import Settings
    from streams.candidates import sequence_top_n

    s = Settings.model_validate({})
    default = shadow_options(parse_args(["--path", "x.txt"]), s)
    assert default.top_n == sequence_top_n(20) == 80  # the docs' "top 80"
    assert shadow_options(parse_args(["--path", "x.txt", "--k", "30"]), s).top_n == 120
    wide = shadow_options(parse_args(["--path", "x.txt", "--top-n", "500"]), s)
    assert wide.top_n == 500 and wide.k == 20


def test_shadow_pools_hold_the_sequence_models_first_top_n() -> None:
    """The only source of a listener alone in an empty catalog is the sequence model: its
    lists are the model's first ``top_n`` unheard tracks, however many it returns."""
    from infra.replay.shadow import ShadowOptions, _lists
    from schemas.event_time import InputLimits
    from schemas.events import Interaction, InteractionType, ListKind
    from streams.catalog import Catalog
    from streams.state import apply_interaction

    ranked = [f"s{i:02d}" for i in range(30)]

    class Model:
        def recommend(self, history: list[str]) -> tuple[list[str], np.ndarray, str]:
            return ranked, np.linspace(0.0, -1.0, len(ranked), dtype=np.float32), "m"

    played = Interaction(
        event_id="e1",
        type=InteractionType.PLAY,
        user_id="u",
        track_id="a",
        occurred_at=datetime.fromtimestamp(1_000, UTC),
    )
    limits = InputLimits.model_validate({})
    st, _ = apply_interaction(None, played, seq_len=50, now_ms=1_000_000, limits=limits)

    def new_list(top_n: int) -> list[str]:
        o = ShadowOptions(
            k=20,
            top_n=top_n,
            max_per_artist=2,
            seq_len=50,
            session_gap_s=1800.0,
            limits=limits,
            overrides={},
        )
        lists = _lists(st, Catalog(ttl_s=0.0), Model(), 2_000_000, o)  # type: ignore[arg-type]
        return lists[ListKind.NEW]

    assert new_list(5) == ranked[:5]
    assert new_list(80) == ranked[:20]
