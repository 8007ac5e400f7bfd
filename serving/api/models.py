"""Request and response bodies of the query API (frozen; every field described)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.events import Id, InteractionType, ListKind, RecommendedItem


class _Body(BaseModel):
    model_config = ConfigDict(frozen=True)


class RecommendationsOut(_Body):
    """The latest list the pipeline emitted for a listener (as on the topic, cut to k)."""

    user_id: str = Field(description="Listener id.")
    kind: ListKind = Field(description="Kind of list (schemas.events.ListKind).")
    generated_at: datetime = Field(description="When the list was computed (UTC).")
    source_event_id: str | None = Field(description="The interaction that triggered it.")
    model_version: str = Field(description="Version of the models that produced it.")
    items: list[RecommendedItem] = Field(description="At most k items, best first.")


class HistoryEntry(_Body):
    """One interaction of a listener, as the API saw it on the topic."""

    event_id: str = Field(description="Event id.")
    type: InteractionType = Field(description="play, skip or like.")
    track_id: str = Field(description="Track id.")
    occurred_at: datetime = Field(description="When it happened.")


class HistoryOut(_Body):
    """A listener's recent interactions, newest first."""

    user_id: str = Field(description="Listener id.")
    items: list[HistoryEntry] = Field(description="Newest first, at most `api_history`.")


class ListenersOut(_Body):
    """Listeners the API has seen (interactions or lists)."""

    user_ids: list[str] = Field(description="Sorted listener ids.")


class GenreOut(_Body):
    """A genre predicted from audio by MusiCNN's genre tags (models/genre.py)."""

    label: str = Field(
        description="rock, metal, pop, electronic, ambient, experimental, jazz, soul, blues, "
        "folk, country or hip-hop; empty when no genre tag fires."
    )
    confidence: float = Field(
        ge=0.0,
        le=1.0,
        description="The label's share of all genres' scores: 1 = no other genre heard, "
        "1/12 = all alike, 0 = unknown. How clearly one genre stands out, not a probability.",
    )


class TrackOut(_Body):
    """What Resonate knows about a track."""

    track_id: str = Field(description="Track id.")
    title: str = Field(description="Title as uploaded; empty when unknown.")
    artist_id: str = Field(description="Artist id; empty when unknown.")
    genre: str = Field(description="Genre given at upload; empty when unknown.")
    release_date: str = Field(description="YYYY-MM-DD; empty when unknown.")
    top_tags: list[str] = Field(description="MusiCNN's top tags for its audio, best first.")
    audio_genre: GenreOut | None = Field(
        description="Genre predicted from its audio (beside the given `genre`); null without audio."
    )
    has_audio: bool = Field(
        description="Whether its audio is embedded (searchable by sound); tracks without "
        "audio are still recommended through co-plays and popularity."
    )
    uploaded_at: datetime | None = Field(description="Upload time, when known.")


class SimilarTrack(_Body):
    """One audio neighbour."""

    track_id: str = Field(description="Track id.")
    score: float = Field(description="Cosine similarity of the audio embeddings (1 = same).")
    title: str = Field(description="Title; empty when unknown.")
    artist_id: str = Field(description="Artist id; empty when unknown.")
    genre: str = Field(description="Genre; empty when unknown.")
    top_tags: list[str] = Field(description="Top tags of its audio.")
    audio_genre: GenreOut = Field(description="Genre predicted from its audio.")


class SimilarOut(_Body):
    """Nearest tracks by sound, best first."""

    query: str = Field(description="The track id, or the uploaded file's name.")
    top_tags: list[str] = Field(description="Top tags of the query audio.")
    items: list[SimilarTrack] = Field(description="At most k neighbours, best first.")


class AudioSearchOut(SimilarOut):
    """Nearest tracks to an uploaded file, its genre, and the tracks of that genre."""

    genre: GenreOut = Field(description="Genre of the uploaded file, predicted from its audio.")
    same_genre: list[SimilarTrack] = Field(
        description="At most k tracks whose predicted genre is the file's, nearest by sound "
        "first, within the release window (`released_after`/`released_before`) and the other "
        "filters; empty when the file's genre is unknown."
    )


class SeedIn(_Body):
    """Favourite tracks that start a listener's profile."""

    track_ids: list[Id] = Field(min_length=1, max_length=20, description="Known track ids.")


class SeedOut(_Body):
    """What was published: one ``like`` per seed track on the ``interactions`` topic."""

    user_id: str = Field(description="Listener id.")
    track_ids: list[str] = Field(description="Tracks liked on the listener's behalf.")
    event_ids: list[str] = Field(description="Their event ids, in publish order.")
    source: Literal["track_ids", "audio"] = Field(description="What the seed came from.")


class Problem(_Body):
    """An error, as RFC 9457 problem details (``application/problem+json``)."""

    type: str = Field("about:blank", description="URI naming the problem type.")
    title: str = Field(description="Short summary of the problem type.")
    status: int = Field(description="HTTP status code.")
    detail: str = Field("", description="What went wrong in this request.")
    instance: str = Field("", description="The request path.")


class Readiness(_Body):
    """Whether each collaborator is usable."""

    ready: bool = Field(description="All of the components below are ready.")
    components: dict[str, bool] = Field(description="kafka_feed, milvus, triton.")
