"""User state and track signals: ordering, bounds, replays, co-plays."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from schemas.event_time import InputLimits, Verdict
from schemas.events import Interaction
from streams.catalog import Catalog
from streams.state import (
    HEARD_GENERATION,
    DeltaBuilder,
    HeardFilter,
    UploadInfo,
    UserState,
    apply_interaction,
)

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
NOW_MS = int(T0.timestamp() * 1000) + 3 * 86_400_000  # the worker's clock, after the events
LIMITS = InputLimits()


def ev(
    i: int, track: str, kind: str = "play", *, minutes: float | None = None, user: str = "u"
) -> Interaction:
    return Interaction.model_validate(
        {
            "event_id": f"e{i}",
            "type": kind,
            "user_id": user,
            "track_id": track,
            "occurred_at": T0 + timedelta(minutes=i if minutes is None else minutes),
        }
    )


def fold(events: list[Interaction], seq_len: int = 50) -> UserState:
    st: UserState | None = None
    for i, e in enumerate(events):
        st, _ = apply_interaction(st, e, seq_len=seq_len, now_ms=NOW_MS, limits=LIMITS, offset=i)
    assert st is not None
    return st


def apply(st: UserState, e: Interaction, offset: int) -> tuple[UserState, Verdict]:
    return apply_interaction(st, e, seq_len=50, now_ms=NOW_MS, limits=LIMITS, offset=offset)


def test_keeps_last_l_events_in_time_order_and_plays_apart_from_skips() -> None:
    st = fold([ev(i, f"t{i}", "skip" if i % 3 == 0 else "play") for i in range(10)], seq_len=4)
    assert [h.track_id for h in st.recent] == ["t6", "t7", "t8", "t9"]
    assert [h.track_id for h in st.skipped()] == ["t6", "t9"]
    assert [h.track_id for h in st.positives()] == ["t7", "t8"]
    assert (st.plays, st.skips) == (6, 4)
    heard = st.heard.matcher()  # exclusion remembers more than L
    assert all(f"t{i}" in heard for i in range(6))
    assert sum(f"x{i}" in heard for i in range(1000)) <= 10  # few false positives


def test_out_of_order_event_is_placed_by_time() -> None:
    st = fold([ev(1, "a"), ev(3, "c"), ev(2, "b")])
    assert [h.track_id for h in st.recent] == ["a", "b", "c"]


def test_redelivered_offset_and_repeated_event_id_count_once() -> None:
    st = fold([ev(1, "a"), ev(2, "b")])  # offsets 0, 1
    again, verdict = apply(st, ev(3, "c"), offset=1)
    assert verdict is Verdict.DUPLICATE and again == st  # a broker redelivery: old offset
    again, verdict = apply(st, ev(1, "a"), offset=7)
    assert verdict is Verdict.DUPLICATE and again == st  # a producer's duplicate: same id
    after, verdict = apply(st, ev(3, "c"), offset=2)
    assert verdict is Verdict.APPLIED and after.offset == 2


def test_state_record_is_bounded_whatever_the_history() -> None:
    short = fold([ev(i, f"t{i}") for i in range(300)])  # past L and the 256 remembered ids
    long = fold([ev(i, f"t{i}") for i in range(3000)])
    longer = fold([ev(i, f"t{i}") for i in range(6000)])
    assert len(long.recent) == 50 and len(long.ids) == 256
    size = len(long.model_dump_json())
    # once both heard generations hold tracks, 2x more history is the same record but for
    # longer ids and counters; a short one has an empty older generation, written as ""
    assert abs(len(longer.model_dump_json()) - size) < 300 and size < 12_000
    assert len(short.model_dump_json()) < size - 1000
    heard = long.heard.matcher()
    assert all(f"t{i}" in heard for i in range(3000 - 50 - HEARD_GENERATION, 2950))


def test_heard_filter_forgets_in_generations() -> None:
    f = HeardFilter().add(f"old{i}" for i in range(HEARD_GENERATION))
    f = f.add(f"mid{i}" for i in range(HEARD_GENERATION))
    assert "old1" in f.matcher() and "mid1" in f.matcher()
    f = f.add(["new"])  # a third generation starts: the oldest is forgotten
    m = f.matcher()
    assert "new" in m and "mid1" in m
    assert sum(f"old{i}" in m for i in range(HEARD_GENERATION)) < HEARD_GENERATION // 10


def test_state_survives_json_round_trip() -> None:
    st = fold([ev(1, "a"), ev(2, "b", "skip"), ev(3, "c", "like")])
    assert UserState.model_validate(st.model_dump(mode="json")) == st


def _delta(events: list[Interaction]) -> DeltaBuilder:
    """The delta of ``events`` folded into their listeners' states."""
    b = DeltaBuilder(known_artists={})
    states: dict[str, UserState] = {}
    for i, e in enumerate(events):
        before = states.get(e.user_id) or UserState(user_id=e.user_id)
        st, verdict = apply_interaction(
            before, e, seq_len=50, now_ms=NOW_MS, limits=LIMITS, offset=i
        )
        if verdict is Verdict.APPLIED:
            states[e.user_id] = st
            b.interaction(before, e, session_gap_s=1800)
    return b


def test_coplay_only_within_session_and_not_for_skips() -> None:
    d = _delta([ev(1, "a"), ev(2, "b")]).build("d")
    assert d.plays == {"a": 1, "b": 1}
    assert d.coplays == {"a": {"b": 1}, "b": {"a": 1}}
    assert _delta([ev(1, "a"), ev(2, "b", "skip")]).build("d").coplays == {}
    assert _delta([ev(1, "a"), ev(2, "b", minutes=120)]).build("d").coplays == {}


def test_catalog_folds_deltas_once_and_ranks_lists() -> None:
    cat = Catalog(ttl_s=0)
    events = [ev(1, "a"), ev(2, "b"), ev(3, "b", user="v"), ev(4, "c", "skip")]
    d = _delta(events).build("d1")
    assert cat.apply(d) and not cat.apply(d)  # a replayed delta changes nothing
    assert cat.plays == {"a": 1, "b": 2} and cat.skips == {"c": 1}
    assert cat.coplays_of("a") == {"b": 1}
    up = DeltaBuilder(known_artists={})
    up.upload("n", UploadInfo(artist_id="x", uploaded_at_ms=1_000, title="Nebula"))
    up.upload("old", UploadInfo(artist_id="y", uploaded_at_ms=10))
    cat.apply(up.build("d2"))
    popular, fresh = cat.lists(top_popular=5, top_fresh=5, now_ms=2_000, fresh_window_ms=1_500)
    assert [t.track_id for t in popular] == ["b", "a"]  # c: skipped only, not popular
    assert [t.track_id for t in fresh] == ["n"] and fresh[0].artist_id == "x"
    assert cat.labels == {"n": "Nebula by x"}  # how reasons name an uploaded track


def test_state_codec_reads_the_dict_tables_changelog_and_writes_the_same_json() -> None:
    """States live in the table as objects; the changelog keeps the JSON the dict table
    wrote, so a worker recovers a changelog written before the codec existed."""
    import json
    from types import SimpleNamespace

    from streams.state_codec import ModelTableSchema

    bad: list[str] = []
    codec = ModelTableSchema(UserState, on_invalid=bad.append)
    st = UserState(user_id="u1").model_copy(update={"plays": 3, "offset": 7})
    old_bytes = json.dumps(st.model_dump(mode="json")).encode()  # what the dict table wrote

    def msg(value: bytes | None) -> SimpleNamespace:
        return SimpleNamespace(value=value, topic="t-changelog", partition=2, offset=9)

    back = codec.loads_value(None, msg(old_bytes))  # type: ignore[arg-type]
    assert isinstance(back, UserState) and back == st
    payload, _ = codec.dumps_value(None, st, headers=None)  # type: ignore[arg-type]
    assert json.loads(payload) == json.loads(old_bytes)
    assert codec.loads_value(None, msg(None)) is None  # type: ignore[arg-type]
    assert not bad
    # a record that no longer validates: no state, counted with where it was
    assert codec.loads_value(None, msg(b'{"user_id": 5}')) is None  # type: ignore[arg-type]
    assert bad == ["t-changelog[2]@9"]


def test_heard_matcher_follows_the_filter_not_a_stale_copy() -> None:
    a = HeardFilter().add(["t1"])
    b = a.add(["t2"])
    assert "t1" in a.matcher() and "t2" not in a.matcher()
    assert "t2" in b.matcher() and a.matcher() is a.matcher()


def test_an_empty_heard_generation_is_written_as_nothing_and_old_records_still_read() -> None:
    import base64

    from streams.state import HEARD_BITS

    fresh = UserState(user_id="u")
    assert fresh.heard.current == fresh.heard.previous == ""
    assert len(fresh.model_dump_json()) < 300  # was ~2.9 KB of base64 zeros
    f = HeardFilter().add(["t1"])
    assert f.previous == "" and f.current != "" and "t1" in f.matcher()
    # a record written before: every generation as base64 zeros, or a real one
    zeros = base64.b64encode(bytes(HEARD_BITS // 8)).decode()
    old = HeardFilter(current=zeros, previous=zeros)
    assert old.matcher().empty and "t1" not in old.matcher()
    assert HeardFilter(current=f.current, previous=zeros).add(["t2"]).previous == zeros
    assert "t1" in HeardFilter(current=zeros, previous=f.current).matcher()
