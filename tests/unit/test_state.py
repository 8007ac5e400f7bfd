"""User state and track signals: ordering, bounds, replays, co-plays."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from schemas.events import Interaction
from streams.state import (
    DEDUPE_WINDOW,
    TrackStats,
    UserState,
    apply_interaction,
    apply_signal,
    signals_for,
)

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def ev(i: int, track: str, kind: str = "play", *, minutes: float | None = None) -> Interaction:
    return Interaction.model_validate(
        {
            "event_id": f"e{i}",
            "type": kind,
            "user_id": "u",
            "track_id": track,
            "occurred_at": T0 + timedelta(minutes=i if minutes is None else minutes),
        }
    )


def fold(events: list[Interaction], seq_len: int = 50) -> UserState:
    st: UserState | None = None
    for e in events:
        st, _ = apply_interaction(st, e, seq_len=seq_len)
    assert st is not None
    return st


def test_keeps_last_l_events_in_time_order_and_plays_apart_from_skips() -> None:
    st = fold([ev(i, f"t{i}", "skip" if i % 3 == 0 else "play") for i in range(10)], seq_len=4)
    assert [h.track_id for h in st.recent] == ["t6", "t7", "t8", "t9"]
    assert [h.track_id for h in st.skipped()] == ["t6", "t9"]
    assert [h.track_id for h in st.positives()] == ["t7", "t8"]
    assert (st.plays, st.skips) == (6, 4)
    assert len(st.heard) == 10  # exclusion remembers more than L


def test_out_of_order_event_is_placed_by_time() -> None:
    st = fold([ev(1, "a"), ev(3, "c"), ev(2, "b")])
    assert [h.track_id for h in st.recent] == ["a", "b", "c"]


def test_replayed_event_counts_once() -> None:
    st = fold([ev(1, "a"), ev(2, "b")])
    again, new = apply_interaction(st, ev(1, "a"), seq_len=50)
    assert not new and again == st


def test_dedupe_window_is_bounded() -> None:
    st = fold([ev(i, "a") for i in range(DEDUPE_WINDOW + 20)])
    assert len(st.event_ids) == DEDUPE_WINDOW


def test_state_survives_json_round_trip() -> None:
    st = fold([ev(1, "a"), ev(2, "b", "skip"), ev(3, "c", "like")])
    assert UserState.model_validate(st.model_dump(mode="json")) == st


def test_coplay_only_within_session_and_not_for_skips() -> None:
    st = fold([ev(1, "a")])
    sigs = signals_for(st, ev(2, "b"), session_gap_s=1800)
    assert {(s.track_id, s.kind, s.other_track_id) for s in sigs} == {
        ("b", "play", None),
        ("a", "coplay", "b"),
        ("b", "coplay", "a"),
    }
    assert [s.kind for s in signals_for(st, ev(2, "b", "skip"), session_gap_s=1800)] == ["skip"]
    late = ev(2, "b", minutes=120)
    assert [s.kind for s in signals_for(st, late, session_gap_s=1800)] == ["play"]


def test_track_stats_fold_and_replay() -> None:
    st = fold([ev(1, "a")])
    sigs = signals_for(st, ev(2, "b"), session_gap_s=1800)
    stats: dict[str, TrackStats] = {}
    for s in sigs + sigs:  # replayed internal topic
        cur, _ = apply_signal(stats.get(s.track_id), s)
        stats[s.track_id] = cur
    assert stats["b"].plays == 1
    assert stats["a"].coplays == {"b": 1}
    assert stats["b"].coplays == {"a": 1}
