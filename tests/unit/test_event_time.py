"""Sane input values: the event-time window, replays however old, listener-counted
popularity, future-dated uploads (pure functions, no broker)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.event_time import (
    InputLimits,
    Verdict,
    event_time_verdict,
    is_fresh,
    latency_s,
    upload_time_ms,
)
from schemas.events import Interaction
from schemas.settings import Settings
from streams.catalog import Catalog
from streams.dedupe import EventIds
from streams.fold import Folded, Incoming, fold_batch
from streams.state import DeltaBuilder, UploadInfo, UserState, apply_interaction

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
LIMITS = InputLimits()
DAY_MS = 86_400_000


def ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


NOW_MS = ms(T0) + DAY_MS // 2  # the worker's clock: half a day after T0


def ev(
    eid: str, at: datetime, *, user: str = "u", track: str = "t", kind: str = "play"
) -> Interaction:
    return Interaction.model_validate(
        {"event_id": eid, "type": kind, "user_id": user, "track_id": track, "occurred_at": at}
    )


class Fold:
    """fold_batch over an in-memory table, with a catalog fed by its deltas."""

    def __init__(self, limits: InputLimits = LIMITS) -> None:
        self.states: dict[str, UserState] = {}
        self.catalog = Catalog(ttl_s=0)
        self.limits = limits
        self.offset = 0

    def __call__(self, events: list[Interaction], *, now_ms: int = NOW_MS) -> Folded:
        batch = []
        for e in events:
            batch.append(Incoming(e, 0, self.offset))
            self.offset += 1  # a producer's re-send is a new record: a new offset
        folded = fold_batch(
            batch,
            get_state=self.states.get,
            put_state=lambda st, _: self.states.__setitem__(st.user_id, st),
            seq_len=50,
            session_gap_s=1800,
            now_ms=now_ms,
            limits=self.limits,
            known_artists=self.catalog.artists,
        )
        if folded.delta is not None:
            self.catalog.apply(folded.delta)
        return folded


def reasons(folded: Folded) -> list[tuple[str, str]]:
    return [(inc.event.event_id, why) for inc, why in folded.rejected]


# --- the event-time window ---


def test_window_rejects_year_0001_and_9999_and_accepts_a_year_back_to_a_day_ahead() -> None:
    def verdict(at_ms: int) -> Verdict | None:
        return event_time_verdict(at_ms, now_ms=NOW_MS, limits=LIMITS)

    assert verdict(ms(datetime(1, 1, 1, tzinfo=UTC))) is Verdict.TOO_OLD
    assert verdict(ms(datetime(9999, 12, 31, 23, 59, tzinfo=UTC))) is Verdict.IN_FUTURE
    assert verdict(NOW_MS) is None
    assert verdict(NOW_MS - LIMITS.max_age_ms) is None  # the bounds are inside
    assert verdict(NOW_MS - LIMITS.max_age_ms - 1) is Verdict.TOO_OLD
    assert verdict(NOW_MS + LIMITS.max_ahead_ms) is None
    assert verdict(NOW_MS + LIMITS.max_ahead_ms + 1) is Verdict.IN_FUTURE
    assert LIMITS.max_age_ms == 365 * DAY_MS and LIMITS.max_ahead_ms == DAY_MS
    tight = InputLimits.from_settings(Settings(event_max_age_s=60, event_max_ahead_s=5))
    assert (tight.max_age_ms, tight.max_ahead_ms) == (60_000, 5_000)
    assert Verdict.TOO_OLD.value == "event-time-too-old"
    assert Verdict.IN_FUTURE.value == "event-time-in-future"


def test_latency_is_observed_only_inside_the_window() -> None:
    assert latency_s(NOW_MS - 2_000, now_ms=NOW_MS, limits=LIMITS) == 2.0
    assert latency_s(NOW_MS + 500, now_ms=NOW_MS, limits=LIMITS) == 0.0  # small skew
    year_1 = ms(datetime(1, 1, 1, tzinfo=UTC))  # the attack: 6.4e10 s into the histogram
    assert latency_s(year_1, now_ms=NOW_MS, limits=LIMITS) is None
    assert latency_s(NOW_MS + 2 * DAY_MS, now_ms=NOW_MS, limits=LIMITS) is None


def test_fold_rejects_out_of_window_events_with_reasons_and_applies_the_rest() -> None:
    fold = Fold()
    folded = fold(
        [
            ev("old", datetime(1, 1, 1, tzinfo=UTC), track="x"),
            ev("future", datetime(9999, 12, 31, tzinfo=UTC), track="x"),
            ev("ok", T0, track="y"),
        ]
    )
    assert reasons(folded) == [("old", "event-time-too-old"), ("future", "event-time-in-future")]
    assert folded.duplicates == 0
    [touched] = folded.listeners
    # Only applied events reach the refresh, and so the latency histogram.
    assert [e.event_id for e in touched.events] == ["ok"]
    assert [h.track_id for h in fold.states["u"].recent] == ["y"]
    assert folded.delta is not None and folded.delta.plays == {"y": 1}
    assert fold.states["u"].ids.floor_ms is not None
    assert fold.states["u"].ids.floor_ms <= ms(T0)  # a rejected time moved no floor


def test_a_batch_of_only_rejected_events_writes_no_state() -> None:
    fold = Fold()
    folded = fold([ev("old", datetime(1, 1, 1, tzinfo=UTC))])
    assert reasons(folded) == [("old", "event-time-too-old")]
    assert folded.listeners == [] and folded.delta is None and fold.states == {}


# --- replays, however many events later ---


def test_a_replay_is_never_applied_again_however_many_events_came_after() -> None:
    fold = Fold()
    first = ev("e0", T0, track="first")
    fold([first])
    later = [ev(f"e{i}", T0 + timedelta(seconds=i), track=f"t{i}") for i in range(1, 201)]
    fold(later)
    # 200 events later (the old rule remembered the last 50 ids): still a duplicate.
    folded = fold([first])
    assert folded.duplicates == 1 and folded.listeners == [] and not folded.rejected
    fold([ev(f"f{i}", T0 + timedelta(seconds=300 + i), track=f"t{i}") for i in range(1000)])
    before = fold.states["u"]
    # 1,200 events later its id is forgotten, but the floor has passed it: late, rejected
    # (dead-lettered), never applied twice.
    folded = fold([first])
    assert reasons(folded) == [("e0", "late")] and folded.listeners == []
    assert fold.states["u"] == before
    assert fold.catalog.plays["first"] == 1
    assert len(fold.states["u"].ids) <= LIMITS.dedupe_max_ids


def test_an_event_older_than_the_horizon_is_late_and_returned() -> None:
    fold = Fold()
    fold([ev("now", T0)])
    folded = fold([ev("straggler", T0 - timedelta(days=1, seconds=1))])
    assert reasons(folded) == [("straggler", "late")]
    folded = fold([ev("fine", T0 - timedelta(hours=23))])  # out of order, within the horizon
    assert not folded.rejected and [e.event_id for e in folded.listeners[0].events] == ["fine"]


def test_a_duplicate_within_one_batch_counts_once() -> None:
    fold = Fold()
    folded = fold([ev("a", T0), ev("a", T0), ev("b", T0 + timedelta(seconds=1))])
    assert folded.duplicates == 1
    assert [e.event_id for e in folded.listeners[0].events] == ["a", "b"]


def test_replay_memory_is_bounded_after_100k_events() -> None:
    ids = EventIds()
    base = ms(T0)
    for i in range(100_000):
        at = base + 250 * i  # four events a second
        assert ids.verdict(f"id{i}", at) is None  # in order, new: never late, never a dup
        ids = ids.remember(f"id{i}", at, newest_ms=at, now_ms=at, limits=LIMITS)
    assert len(ids) <= LIMITS.dedupe_max_ids
    assert len(ids.packed) <= 4 * 16 * LIMITS.dedupe_max_ids // 3 + 4  # 16 bytes an id
    assert ids.verdict("id99999", 0) is Verdict.DUPLICATE
    assert ids.verdict("id0", base) is Verdict.LATE


def test_a_burst_within_one_second_is_applied_whole() -> None:
    # A backfill or load test: 1,000 events of one listener 1 ms apart. With times kept in
    # whole seconds the floor jumped to the next second and made the rest late.
    fold = Fold()
    burst = [ev(f"b{i}", T0 + timedelta(milliseconds=i), track=f"t{i}") for i in range(1000)]
    folded = fold(burst)
    assert not folded.rejected and len(folded.listeners[0].events) == 1000
    assert fold([burst[-1]]).duplicates == 1


def test_dedupe_invariant_on_random_streams() -> None:
    """Random listeners' streams with out-of-order times and replays of any earlier event:
    no event id is ever applied twice, memory stays bounded, and an event at least 2 s
    newer than everything applied is always applied (the floor never runs ahead)."""
    limits = InputLimits(dedupe_horizon_ms=60_000, dedupe_max_ids=8)
    rng = random.Random(8)
    for _ in range(30):
        st: UserState | None = None
        sent: list[Interaction] = []
        applied: set[str] = set()
        newest = ms(T0)
        for n in range(400):
            if sent and rng.random() < 0.3:
                e = rng.choice(sent)  # a replay of anything sent before
            else:
                jitter = rng.choice([-120_000, -30_000, -2_000, 0, 2_000, 2_000, 30_000])
                at = T0 + timedelta(milliseconds=newest - ms(T0) + jitter + rng.randint(0, 999))
                e = ev(f"e{n}", at, track=f"t{n % 37}")
                sent.append(e)
            now_ms = max(newest, ms(e.occurred_at)) + rng.randint(0, 5_000)
            st, verdict = apply_interaction(st, e, seq_len=20, now_ms=now_ms, limits=limits)
            if verdict is Verdict.APPLIED:
                assert e.event_id not in applied
                applied.add(e.event_id)
                newest = max(newest, ms(e.occurred_at))
            elif e.event_id not in applied and ms(e.occurred_at) >= newest + 2_000:
                raise AssertionError(f"an in-order new event was refused: {verdict}")
            assert len(st.ids) <= limits.dedupe_max_ids
        assert len(applied) > 150  # the stream did get applied


def test_a_state_written_before_the_id_memory_upgrades_exactly() -> None:
    """Records already in the changelog kept ids in ``recent``; they still catch replays."""
    items = [
        {"track_id": f"t{i}", "type": "play", "at_ms": ms(T0) + i * 1000, "event_id": f"e{i}"}
        for i in range(3)
    ]
    old: dict[str, Any] = {"user_id": "u", "recent": items, "offset": 7, "plays": 3}
    st = UserState.model_validate(old)
    assert len(st.ids) == 3 and st.ids.floor_ms is None  # nothing evicted: all are here

    def verdict(state: UserState, e: Interaction) -> Verdict:
        return state.verdict(e, offset=8, now_ms=NOW_MS, limits=LIMITS)

    assert verdict(st, ev("e1", T0 + timedelta(seconds=1))) is Verdict.DUPLICATE
    assert verdict(st, ev("n", T0 - timedelta(hours=1))) is Verdict.APPLIED
    evicted = UserState.model_validate({**old, "heard": {"count": 5}})
    assert evicted.ids.floor_ms == ms(T0) + 1  # older events may have been applied
    assert verdict(evicted, ev("n", T0 - timedelta(hours=1))) is Verdict.LATE
    assert UserState.model_validate(st.model_dump(mode="json")) == st  # and round-trips


# --- popularity counts listeners ---


def test_one_listener_playing_a_track_60_times_counts_once() -> None:
    fold = Fold()
    for i in range(60):
        fold([ev(f"a{i}", T0 + timedelta(minutes=i), user="fan", track="hammered")])
    for n in range(2):
        fold([ev(f"b{n}", T0, user=f"listener{n}", track="liked")])
    assert fold.catalog.plays["hammered"] == 1 and fold.catalog.plays["liked"] == 2
    popular, _ = fold.catalog.lists(
        top_popular=2, top_fresh=0, now_ms=NOW_MS, fresh_window_ms=DAY_MS
    )
    assert [t.track_id for t in popular] == ["liked", "hammered"]


def test_sixty_listeners_count_sixty() -> None:
    fold = Fold()
    fold([ev(f"e{i}", T0, user=f"l{i}", track="hit") for i in range(60)])
    assert fold.catalog.plays["hit"] == 60 and fold.catalog.popularity("hit") == 60


def test_a_repeated_pair_counts_one_coplay_and_kinds_count_once_each() -> None:
    fold = Fold()
    pairs = [ev(f"p{i}", T0 + timedelta(minutes=i), track="ab"[i % 2]) for i in range(60)]
    fold(pairs)
    assert fold.catalog.coplays_of("a") == {"b": 1} and fold.catalog.coplays_of("b") == {"a": 1}
    # A skip and a later play of one track: -0.5 and +1 once each, however often repeated.
    fold([ev(f"s{i}", T0, user="v", track="c", kind="skip") for i in range(5)])
    fold([ev(f"q{i}", T0 + timedelta(minutes=1), user="v", track="c") for i in range(5)])
    assert (fold.catalog.skips["c"], fold.catalog.plays["c"]) == (1, 1)


def test_a_heard_filter_false_positive_only_under_counts() -> None:
    st = UserState(user_id="u")
    st = st.model_copy(update={"heard": st.heard.add(["x"])})  # heard before `recent`
    b = DeltaBuilder(known_artists={})
    b.interaction(st, ev("e", T0, track="x"), session_gap_s=1800)
    assert b.build("d").plays == {}  # known (truly or by a false positive): not counted


# --- uploads: never "new" forever ---


def test_future_dated_upload_is_clamped_and_never_fresh_forever() -> None:
    year_9999 = ms(datetime(9999, 12, 31, tzinfo=UTC))
    assert upload_time_ms(year_9999, now_ms=NOW_MS) == NOW_MS
    assert upload_time_ms(NOW_MS - 5_000, now_ms=NOW_MS) == NOW_MS - 5_000  # past: kept
    assert not is_fresh(year_9999, now_ms=NOW_MS, window_ms=DAY_MS)
    assert is_fresh(NOW_MS, now_ms=NOW_MS + DAY_MS, window_ms=DAY_MS)
    assert not is_fresh(NOW_MS, now_ms=NOW_MS + DAY_MS + 1, window_ms=DAY_MS)
    assert not is_fresh(None, now_ms=NOW_MS, window_ms=DAY_MS)

    cat = Catalog(ttl_s=0)
    up = DeltaBuilder(known_artists={})
    up.upload("raw", UploadInfo(uploaded_at_ms=year_9999))  # an older, unclamped record
    up.upload("clamped", UploadInfo(uploaded_at_ms=upload_time_ms(year_9999, now_ms=NOW_MS)))
    cat.apply(up.build("d"))

    def fresh(now_ms: int) -> list[str]:
        _, got = cat.lists(top_popular=0, top_fresh=5, now_ms=now_ms, fresh_window_ms=DAY_MS)
        return [t.track_id for t in got]

    assert fresh(NOW_MS) == ["clamped"]
    assert fresh(NOW_MS + 10 * 365 * DAY_MS) == []  # ten years on: nothing is "new"
