"""The public event contract: field names, validation, JSON round trips."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from schemas.events import (
    Interaction,
    InteractionType,
    ListKind,
    Recommendation,
    RecommendedItem,
    TrackUpload,
    json_schemas,
)


def _interaction(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        "event_id": "e1",
        "type": "play",
        "user_id": "u1",
        "track_id": "t1",
        "occurred_at": "2026-11-22T10:00:00+01:00",
        "listened_ms": 30000,
        "track_duration_ms": 180000,
    }
    base.update(kw)
    return base


def test_interaction_parses_rfc3339_and_keeps_offset() -> None:
    ev = Interaction.model_validate_json(json.dumps(_interaction()))
    assert ev.type is InteractionType.PLAY
    assert ev.occurred_at.utcoffset() is not None
    assert ev.occurred_at.astimezone(UTC).hour == 9


@pytest.mark.parametrize(
    "bad",
    [
        {"type": "pause"},
        {"user_id": ""},
        {"occurred_at": "yesterday"},
        {"occurred_at": "2026-11-22T10:00:00"},  # no offset: ambiguous, refused
        {"listened_ms": -1},
    ],
)
def test_interaction_rejects_contract_violations(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Interaction.model_validate(_interaction(**bad))


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    ev = Interaction.model_validate(_interaction(device="phone"))
    assert not hasattr(ev, "device")


def test_events_are_frozen() -> None:
    ev = Interaction.model_validate(_interaction())
    with pytest.raises(ValidationError):
        ev.user_id = "other"  # type: ignore[misc]


def test_upload_and_recommendation_round_trip() -> None:
    up = TrackUpload.model_validate(
        {
            "event_id": "u1",
            "track_id": "t9",
            "audio_uri": "file:///music/a.ogg",
            "release_date": "2024-05-01",
            "uploaded_at": "2026-11-22T10:00:00Z",
        }
    )
    assert TrackUpload.model_validate_json(up.model_dump_json()) == up
    rec = Recommendation(
        user_id="u1",
        generated_at=datetime.now(UTC),
        source_event_id="e1",
        model_version="v1",
        items=[RecommendedItem(track_id="t2", score=0.5, reason="popular")],
    )
    wire = json.loads(rec.model_dump_json())
    assert set(wire) == {
        "user_id",
        "kind",
        "generated_at",
        "source_event_id",
        "event_ids",
        "model_version",
        "items",
    }
    assert set(wire["items"][0]) == {"track_id", "score", "reason"}
    # Added, nothing renamed: a list written before `kind` existed reads as a `new` list.
    del wire["kind"]
    assert Recommendation.model_validate(wire).kind is ListKind.NEW
    assert rec.kind is ListKind.NEW


def test_json_schemas_cover_the_three_topics_with_descriptions() -> None:
    schemas = json_schemas()
    assert set(schemas) == {"interactions", "track-uploads", "recommendations"}
    props = schemas["interactions"]["properties"]
    assert isinstance(props, dict)
    assert set(props) == {
        "event_id",
        "type",
        "user_id",
        "track_id",
        "occurred_at",
        "listened_ms",
        "track_duration_ms",
        "artist_id",
    }
    assert all("description" in p for p in props.values())


def _upload(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        "event_id": "e1",
        "track_id": "t1",
        "audio_uri": "file:///music/t1.ogg",
        "uploaded_at": "2026-11-22T10:00:00Z",
    }
    base.update(kw)
    return base


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("artist_id", "a" * 300, "at most 128 characters"),
        ("artist_id", "é" * 100, "artist_id is 200 bytes of UTF-8; the limit is 128"),
        ("genre", "é" * 65, "genre is 130 bytes of UTF-8; the limit is 128"),
        ("track_id", "'" * 50, "track_id is 150 bytes of UTF-8 (stored key"),
        ("track_id", "a\nb", "track_id must not contain control characters"),
        ("artist_id", "x\ty", "artist_id must not contain control characters"),
        ("title", "é" * 300, "title is 600 bytes of UTF-8; the limit is 512"),
        ("audio_uri", "file:///" + "a" * 3000, "at most 2048 characters"),
    ],
)
def test_upload_fields_fit_the_store_or_fail_with_a_reason(
    field: str, value: str, reason: str
) -> None:
    with pytest.raises(ValidationError) as info:
        TrackUpload.model_validate_json(json.dumps(_upload(**{field: value})))
    errors = info.value.errors()
    assert [e["loc"][0] for e in errors] == [field]
    assert reason in errors[0]["msg"], errors[0]["msg"]


def test_upload_fields_at_their_limits_are_valid() -> None:
    from serving.milvus_schema import VARCHAR_MAX_BYTES

    ev = TrackUpload.model_validate_json(
        json.dumps(
            _upload(
                track_id="t" * 125 + "'",  # its stored key is exactly 128 bytes
                artist_id="é" * 64,
                genre="g" * VARCHAR_MAX_BYTES["genre"],
                title="ti" * 256,
                audio_uri="file:///" + "a" * 2040,
            )
        )
    )
    assert ev.track_id.endswith("'") and len(ev.artist_id or "") == 64
    schema = json_schemas()["track-uploads"]["properties"]
    assert isinstance(schema, dict)
    assert schema["audio_uri"]["maxLength"] == 2048
    assert schema["track_id"]["maxLength"] == 128
