"""Milvus expression literals and stored track keys (serving/milvus_expr.py,
schemas/limits.py); that both Milvus backends read them back exactly is checked in
tests/integration/test_broker_and_store.py (test_hostile_ids_round_trip_everywhere)."""

from __future__ import annotations

import pytest

from schemas.limits import track_id_of, track_key
from serving.milvus_expr import (
    NOTHING,
    field_cmp,
    field_eq,
    quote,
    representable,
    track_ids_in,
    track_ids_not_in,
)
from serving.track_filter import TrackFilter


def test_quote_escapes_only_backslash_and_double_quote() -> None:
    assert quote('a"b') == '"a\\"b"'
    assert quote("a\\b") == '"a\\\\b"'
    assert quote("it's 曲 🎵") == '"it\'s 曲 🎵"'  # raw: Lite does not decode \\u escapes
    assert quote('x"] or track_id in ["y') == '"x\\"] or track_id in [\\"y"'
    for bad in ("a\nb", "a\rb", "\t", "\x00", "\x7f"):
        assert not representable(bad)
        with pytest.raises(ValueError, match="control character"):
            quote(bad)


def test_unrepresentable_values_match_nothing_or_are_left_out() -> None:
    assert field_eq("genre", "a\nb") == NOTHING
    assert field_cmp("release_date", ">=", "2020\n") == NOTHING
    assert track_ids_in(["a\nb"]) == NOTHING
    assert track_ids_not_in(["a\nb"]) == ""
    assert track_ids_not_in(["a\nb", "ok"]) == 'track_id not in ["ok"]'
    with pytest.raises(ValueError):
        field_cmp("release_date", "!=", "x")
    f = TrackFilter(exclude_ids=("a\nb",), exclude_artists=("\r",), genre="rock")
    assert f.expression() == 'genre == "rock"'


def test_the_audio_genre_filters_beside_the_platform_genre_and_the_window() -> None:
    f = TrackFilter(
        genre="Rock", audio_genre="rock", released_after="2020-01-01", released_before=None
    )
    assert f.expression() == (
        'genre == "Rock" and audio_genre == "rock" and release_date != "" '
        'and release_date >= "2020-01-01"'
    )
    assert TrackFilter(audio_genre="").expression() == 'audio_genre == ""'  # the unknown ones
    assert TrackFilter(audio_genre='x" or 1==1').expression() == 'audio_genre == "x\\" or 1==1"'
    assert TrackFilter(audio_genre="a\nb").expression() == NOTHING


@pytest.mark.parametrize("tid", ["it's", "100%", "%27", "%2527", "'%'", "a%25b'", "plain"])
def test_track_keys_are_reversible_and_free_of_apostrophes(tid: str) -> None:
    key = track_key(tid)
    assert "'" not in key
    assert track_id_of(key) == tid
    assert track_ids_in([tid]) == f"track_id in [{quote(key)}]"
