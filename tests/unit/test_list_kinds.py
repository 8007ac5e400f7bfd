"""Two kinds of list: `new` never shows a heard track; `mix` brings favourites back after the
cool-down and never right after a skip (``models.fusion_rule.familiarity``, the function the
offline counterpart calls too)."""

from __future__ import annotations

import pytest

from models.fusion_rule import familiarity
from schemas.events import InteractionType, ListKind
from streams.candidates import VectorCache, gather_pool
from streams.catalog import Catalog
from streams.fusion import DEFAULT_WEIGHTS
from streams.lists import lists_of
from streams.state import CatalogDelta, HistoryItem, UserState

PLAY, SKIP = InteractionType.PLAY, InteractionType.SKIP


def test_familiarity_sums_recency_weights_after_the_cool_down() -> None:
    window = [("a", True), ("b", True), ("a", True), ("c", True), ("d", True)]
    fam = familiarity(window, decay=0.5, cooldown=2)
    # d (age 0) and c (age 1) are cooling down; a was played at ages 2 and 4, b at age 3
    assert fam == {"a": pytest.approx(0.5**2 + 0.5**4), "b": pytest.approx(0.5**3)}
    assert familiarity(window, decay=0.5, cooldown=0)["d"] == 1.0
    assert familiarity([], decay=0.5, cooldown=0) == {}
    # A play inside the cool-down holds the track back, whatever its older plays.
    assert "a" not in familiarity([*window, ("a", True)], decay=0.5, cooldown=1)


def test_never_right_after_a_skip_until_a_later_play_takes_it_back() -> None:
    skipped = [("a", True), ("a", True), ("a", False), ("x", True), ("y", True)]
    assert "a" not in familiarity(skipped, decay=0.85, cooldown=0)
    forgiven = [("a", False), ("a", True), ("x", True), ("y", True)]
    assert familiarity(forgiven, decay=0.5, cooldown=0)["a"] == pytest.approx(0.25)


def _state(events: list[tuple[str, InteractionType]]) -> UserState:
    return UserState(
        user_id="u",
        recent=tuple(
            HistoryItem(track_id=t, type=k, at_ms=1_000 * (i + 1))
            for i, (t, k) in enumerate(events)
        ),
    )


def _lists(st: UserState, catalog: Catalog) -> dict[ListKind, list[tuple[str, str]]]:
    """(track, reason) of both kinds of list, as the refresher ranks them."""
    popular, fresh = catalog.lists(top_popular=20, top_fresh=10, now_ms=10**7, fresh_window_ms=1)
    pool = gather_pool(
        st, [], cache=VectorCache(), catalog=catalog, popular=popular, fresh=fresh, now_ms=10**7
    )
    kinds = (ListKind.NEW, ListKind.MIX)
    got = lists_of(st, pool, kinds, catalog=catalog, weights=DEFAULT_WEIGHTS, k=10, cap=10)
    return {kind: [(i.track_id, i.reason) for i in items] for kind, items in got.items()}


def test_mix_brings_a_favourite_back_and_new_never_does() -> None:
    catalog = Catalog(ttl_s=0.0)
    catalog.apply(CatalogDelta(delta_id="d", plays={f"pop{i}": 10 - i for i in range(8)}))
    # fav played three times, then three other tracks: out of the 3-event cool-down
    st = _state([("fav", PLAY)] * 3 + [("x", PLAY), ("y", PLAY), ("z", PLAY)])
    got = _lists(st, catalog)
    new, mix = ({t for t, _ in got[k]} for k in (ListKind.NEW, ListKind.MIX))
    heard = {"fav", "x", "y", "z"}
    assert new and not heard & new
    # the most played, weighed above popularity, and said so
    assert got[ListKind.MIX][0] == ("fav", "back in your rotation")
    assert not {"x", "y", "z"} & mix  # still cooling down
    assert mix - {"fav"} <= new  # besides the favourite, the same new tracks


def test_mix_holds_back_a_skipped_favourite() -> None:
    catalog = Catalog(ttl_s=0.0)
    catalog.apply(CatalogDelta(delta_id="d", plays={"pop": 3}))
    st = _state([("fav", PLAY)] * 3 + [("fav", SKIP), ("x", PLAY), ("y", PLAY), ("z", PLAY)])
    assert "fav" not in {t for t, _ in _lists(st, catalog)[ListKind.MIX]}


def test_a_new_list_weighs_no_familiar_signal() -> None:
    assert DEFAULT_WEIGHTS.for_kind(ListKind.NEW).familiar == 0.0
    mix = DEFAULT_WEIGHTS.for_kind(ListKind.MIX)
    assert mix.familiar == DEFAULT_WEIGHTS.familiar_weight > 0.0
    assert mix.audio == DEFAULT_WEIGHTS.audio  # only the familiar weight differs
    assert DEFAULT_WEIGHTS.for_kind(ListKind.MIX) is mix  # made once per weights


def test_the_diversity_cap_limits_proposals_not_favourites() -> None:
    """Three favourites by one artist all come back in a `mix` list capped at 1 per
    artist; the cap still holds for that artist's new tracks."""
    catalog = Catalog(ttl_s=0.0)
    catalog.apply(
        CatalogDelta(
            delta_id="d",
            plays={"new-x": 50, "pop": 5},
            artists={"f1": "X", "f2": "X", "f3": "X", "new-x": "X", "new-x2": "X"},
        )
    )
    played = [("f1", PLAY), ("f2", PLAY), ("f3", PLAY)] + [(f"o{i}", PLAY) for i in range(3)]
    st = _state(played)
    popular, fresh = catalog.lists(top_popular=20, top_fresh=0, now_ms=10**7, fresh_window_ms=1)
    pool = gather_pool(
        st, [], cache=VectorCache(), catalog=catalog, popular=popular, fresh=fresh, now_ms=10**7
    )
    got = lists_of(st, pool, (ListKind.MIX,), catalog=catalog, weights=DEFAULT_WEIGHTS, k=10, cap=1)
    ids = [i.track_id for i in got[ListKind.MIX]]
    assert {"f1", "f2", "f3"} <= set(ids)
    assert sum(t.startswith("new-x") for t in ids) == 1  # X's new tracks: capped at 1
