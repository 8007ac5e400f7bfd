"""The query API's pure parts: the Kafka view, the pipeline panel's arithmetic, signals of
reasons, and how reasons name tracks ("title by artist")."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from schemas.event_time import InputLimits
from schemas.events import Interaction, ListKind, Recommendation, RecommendedItem
from serving.api.feed import FeedState
from serving.api.inspector import signal_of
from serving.api.pipeline import PipelinePanel, quantile
from streams.fusion import FusionWeights, track_label
from streams.rank import Candidate, rank

NOW = datetime(2026, 1, 1, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)


def interaction(eid: str, user: str, track: str, kind: str = "play") -> Interaction:
    return Interaction.model_validate(
        {"event_id": eid, "type": kind, "user_id": user, "track_id": track, "occurred_at": NOW}
    )


def rec(user: str, source: str) -> Recommendation:
    item = RecommendedItem(track_id="t", score=1.0, reason="popular on Resonate")
    return Recommendation(
        user_id=user, generated_at=NOW, source_event_id=source, model_version="v", items=[item]
    )


def test_feed_keeps_latest_list_and_bounded_deduplicated_history() -> None:
    st = FeedState(history=2, limits=InputLimits(), clock_ms=lambda: NOW_MS)
    assert st.latest("u") is None and st.history("u") is None
    for i, track in enumerate(["a", "b", "c"]):
        st.apply_interaction(interaction(f"e{i}", "u", track))
    st.apply_interaction(interaction("e2", "u", "c"))  # a replay counts once
    hist = st.history("u")
    assert hist is not None and [h.track_id for h in hist] == ["c", "b"]  # newest first
    st.apply_recommendation(rec("u", "e1"))
    st.apply_recommendation(rec("u", "e2"))
    latest = st.latest("u")
    assert latest is not None and latest.source_event_id == "e2"
    # A `mix` list of a later event is the latest mix; the latest `new` list stays.
    st.apply_recommendation(rec("u", "e3").model_copy(update={"kind": ListKind.MIX}))
    mix, new = st.latest("u", ListKind.MIX), st.latest("u")
    assert mix is not None and mix.source_event_id == "e3"
    assert new is not None and new.source_event_id == "e2"
    assert st.knows_track("a") and not st.knows_track("z")
    assert st.listeners() == ["u"]


def test_the_history_shows_only_what_the_worker_applies() -> None:
    """An event the worker rejects (too old, in the future, a day behind the listener's
    newest) is dead-lettered there and never shown here."""
    from datetime import timedelta

    st = FeedState(history=10, limits=InputLimits(), clock_ms=lambda: NOW_MS)

    def at(eid: str, when: datetime) -> Interaction:
        return interaction(eid, "u", eid).model_copy(update={"occurred_at": when})

    st.apply_interaction(at("ok", NOW - timedelta(minutes=1)))
    st.apply_interaction(at("old", NOW - timedelta(days=400)))
    st.apply_interaction(at("future", NOW + timedelta(days=2)))
    st.apply_interaction(at("late", NOW - timedelta(days=2)))
    hist = st.history("u")
    assert hist is not None and [h.event_id for h in hist] == ["ok"]
    assert st.rejected == 3


async def test_wait_changed_wakes_on_notify_and_times_out() -> None:
    import asyncio

    st = FeedState(history=5, limits=InputLimits())
    v0 = st.version
    assert await st.wait_changed(v0, timeout_s=0.01) == v0
    waiter = asyncio.create_task(st.wait_changed(v0, timeout_s=5))
    await asyncio.sleep(0)
    st.apply_recommendation(rec("u", "e"))
    await st.notify()
    assert await asyncio.wait_for(waiter, 1) > v0


def test_quantile_interpolates_cumulative_buckets() -> None:
    buckets = {0.1: 50.0, 1.0: 90.0, 10.0: 100.0, float("inf"): 100.0}
    assert quantile(buckets, 0.5) == pytest.approx(0.1)
    assert quantile(buckets, 0.7) == pytest.approx(0.1 + 0.9 * 0.5)
    assert quantile(buckets, 0.95) == pytest.approx(1.0 + 9.0 * 0.5)
    assert quantile({float("inf"): 0.0}, 0.5) is None


EXPOSITION = """\
resonate_events_total{topic="interactions",outcome="ok"} 10.0
resonate_events_total{topic="interactions",outcome="invalid"} 3.0
resonate_recommendations_total{source="audio"} 4.0
resonate_event_to_recommendation_seconds_bucket{le="0.1"} 2.0
resonate_event_to_recommendation_seconds_bucket{le="1.0"} 4.0
resonate_event_to_recommendation_seconds_bucket{le="+Inf"} 4.0
"""


def test_panel_sums_workers_and_survives_a_dead_one() -> None:
    def fetch(url: str) -> str:
        if url == "dead":
            raise OSError("refused")
        return EXPOSITION

    panel = PipelinePanel(urls=["w0", "w1", "dead"], fetch=fetch)
    first = panel.scrape()
    assert (first.workers, first.reachable) == (3, 2)
    assert first.events == {"interactions": 20.0}  # invalid ones are not throughput
    assert first.recommendations == 8.0
    e2r = first.latency["event_to_recommendation"]
    assert e2r.count == 8 and e2r.p50_s == pytest.approx(0.1)
    assert first.events_per_s is None
    assert panel.scrape().events_per_s == 0.0


def test_signal_of_each_reason() -> None:
    assert signal_of("sounds like X, which you played") == "audio"
    assert signal_of("listeners who played X also played this") == "co-plays"
    assert signal_of("popular on Resonate right now") == "popularity"
    assert signal_of("new upload that matches your taste") == "fresh"
    assert signal_of("fits what you have been playing") == "sequence"


def test_reasons_name_tracks_by_title_and_artist() -> None:
    assert track_label("Song", "Band") == "Song by Band"
    assert track_label("Song", "") == "Song"
    assert track_label("", "Band") == ""
    titles = {"a": track_label("Song A", "Band")}
    cands = [Candidate(track_id="x", audio=0.9, similar_to="a")]
    items = rank(cands, exclude=set(), k=1, max_per_artist=2, titles=titles, w=FusionWeights())
    assert items[0].reason == "sounds like Song A by Band, which you played"
