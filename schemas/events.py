"""The public event contract: what platforms publish and what consumer apps read.

JSON on the wire, UTF-8. Interactions and recommendations are keyed by
``user_id``, uploads by ``track_id``. Fields may be added later; none may be
renamed. ``resonate schemas`` writes the JSON Schemas of these models.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from schemas.limits import (
    AUDIO_URI_MAX_CHARS,
    TITLE_MAX_BYTES,
    VARCHAR_MAX_BYTES,
    has_control_chars,
    track_key,
)

Id = Annotated[str, StringConstraints(min_length=1, max_length=128, strip_whitespace=True)]


def _stored(field: str, limit: int, *, key: bool = False, matched: bool = True) -> AfterValidator:
    """A check that ``field`` fits its Milvus VARCHAR (``limit`` bytes of UTF-8, of the
    stored key for a track id) and, when filters match on it, holds no control character
    (no Milvus expression could match it on Lite: serving/milvus_expr.py). Without it, a
    value over the limit was stored by Lite and failed the whole batch on a server."""

    def check(value: str) -> str:
        if matched and has_control_chars(value):
            raise ValueError(f"{field} must not contain control characters")
        size = len((track_key(value) if key else value).encode("utf-8"))
        if size > limit:
            what = "bytes of UTF-8 (stored key: ' and % take 3 bytes)" if key else "bytes of UTF-8"
            raise ValueError(f"{field} is {size} {what}; the limit is {limit}")
        return value

    return AfterValidator(check)


# Length in characters for the JSON Schema (a character is at least one byte); the byte
# limit of the store is checked on top.
TrackId = Annotated[
    str,
    StringConstraints(
        min_length=1, max_length=VARCHAR_MAX_BYTES["track_id"], strip_whitespace=True
    ),
    _stored("track_id", VARCHAR_MAX_BYTES["track_id"], key=True),
]
ArtistId = Annotated[
    str,
    StringConstraints(max_length=VARCHAR_MAX_BYTES["artist_id"]),
    _stored("artist_id", VARCHAR_MAX_BYTES["artist_id"]),
]
Genre = Annotated[
    str,
    StringConstraints(max_length=VARCHAR_MAX_BYTES["genre"]),
    _stored("genre", VARCHAR_MAX_BYTES["genre"]),
]
Title = Annotated[
    str,
    StringConstraints(max_length=TITLE_MAX_BYTES),
    _stored("title", TITLE_MAX_BYTES, matched=False),
]


class _Event(BaseModel):
    # Frozen: events are facts. extra="ignore": producers may already send fields
    # a later version of this contract adds, and that must not fail validation.
    model_config = ConfigDict(frozen=True, extra="ignore")


class InteractionType(StrEnum):
    """What the listener did with a track."""

    PLAY = "play"
    SKIP = "skip"
    LIKE = "like"


class Interaction(_Event):
    """A listener played, skipped or liked a track (topic ``interactions``)."""

    event_id: Id = Field(
        description="Unique id of this event; replays with the same id count once."
    )
    type: InteractionType = Field(description="play, skip or like.")
    user_id: Id = Field(description="Listener id; the Kafka message key.")
    track_id: Id = Field(description="Track id.")
    occurred_at: AwareDatetime = Field(description="When it happened (RFC 3339, with offset).")
    listened_ms: int | None = Field(
        default=None, ge=0, description="How long the track was listened to, in ms."
    )
    track_duration_ms: int | None = Field(
        default=None, ge=0, description="Full track duration in ms, if known."
    )
    artist_id: ArtistId | None = Field(
        default=None,
        description="The track's artist, if the platform knows it: the content signal of "
        "tracks without audio; at most 128 bytes of UTF-8, no control characters.",
    )


class TrackUpload(_Event):
    """A new track was uploaded (topic ``track-uploads``)."""

    event_id: Id = Field(description="Unique id of this event.")
    track_id: TrackId = Field(
        description="Track id; the Kafka message key. At most 128 bytes of UTF-8 as stored "
        "(' and % count 3 bytes), no control characters."
    )
    audio_uri: str = Field(
        min_length=1,
        max_length=AUDIO_URI_MAX_CHARS,
        description="file:// under an allowed audio root, or http(s):// on an allowed host.",
    )
    title: Title | None = Field(
        default=None, description="Track title (at most 512 bytes of UTF-8)."
    )
    artist_id: ArtistId | None = Field(
        default=None,
        description="Artist id (diversity rule); at most 128 bytes of UTF-8, no control "
        "characters.",
    )
    genre: Genre | None = Field(
        default=None,
        description="Genre label given by the platform; at most 128 bytes of UTF-8, no "
        "control characters.",
    )
    release_date: date | None = Field(default=None, description="Release date (YYYY-MM-DD).")
    uploaded_at: AwareDatetime = Field(description="When it was uploaded (RFC 3339).")


class RecommendedItem(_Event):
    """One recommended track with its score and a human-readable reason."""

    track_id: str = Field(description="Recommended track.")
    score: float = Field(description="Fused score; higher is better; comparable within a list.")
    reason: str = Field(description="Short explanation shown to the listener.")


class ListKind(StrEnum):
    """Which kind of list a recommendation is (a listener gets one of each kind the
    platform serves, ``Settings.list_kinds``)."""

    NEW = "new"
    """Tracks the listener has not heard ("new for you")."""
    MIX = "mix"
    """New tracks and favourites back from the listener's recent listening, after a
    cool-down and never right after a skip."""


class Recommendation(_Event):
    """A refreshed top-K list for one listener (topic ``recommendations``)."""

    user_id: str = Field(description="Listener id; the Kafka message key.")
    kind: ListKind = Field(
        default=ListKind.NEW,
        description="Kind of list: `new` (unheard tracks only; what every list was before "
        "this field) or `mix` (favourites may come back). A consumer that wants one kind "
        "keeps the latest list of that kind per listener.",
    )
    generated_at: datetime = Field(description="When the list was computed (UTC).")
    source_event_id: str | None = Field(
        default=None, description="The interaction that triggered this refresh, if any."
    )
    event_ids: list[str] = Field(
        default_factory=list,
        description="Every interaction this list answers, oldest first: a listener's events "
        "folded into one refresh get one list (source_event_id is the last of them).",
    )
    model_version: str = Field(description="Version of the models that produced the list.")
    items: list[RecommendedItem] = Field(description="Top-K items, best first.")


#: topic role -> model, for `resonate schemas` and the codec.
PUBLIC_EVENTS: dict[str, type[BaseModel]] = {
    "interactions": Interaction,
    "track-uploads": TrackUpload,
    "recommendations": Recommendation,
}


def json_schemas() -> dict[str, dict[str, object]]:
    """JSON Schema (draft 2020-12, as pydantic emits it) of every public event."""
    return {name: model.model_json_schema() for name, model in PUBLIC_EVENTS.items()}
