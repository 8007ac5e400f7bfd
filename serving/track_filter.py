"""Filters of the query API's neighbour search, as Milvus boolean expressions (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from serving.milvus_expr import field_cmp, field_eq, field_not_in, track_ids_not_in


@dataclass(frozen=True)
class TrackFilter:
    """Which tracks a filtered search may return (every set condition must hold)."""

    exclude_ids: tuple[str, ...] = ()
    genre: str | None = None
    exclude_artists: tuple[str, ...] = ()
    released_after: str | None = None  # ISO date, inclusive
    released_before: str | None = None  # ISO date, inclusive
    audio_genre: str | None = None  # predicted from the audio (models/genre.py)

    def expression(self) -> str:
        """The Milvus boolean expression (values quoted by ``serving.milvus_expr``: no
        injection, exact matches on Milvus Lite and the server)."""
        parts: list[str] = []
        if self.exclude_ids:
            parts.append(track_ids_not_in(self.exclude_ids))
        if self.genre is not None:
            parts.append(field_eq("genre", self.genre))
        if self.audio_genre is not None:
            parts.append(field_eq("audio_genre", self.audio_genre))
        if self.exclude_artists:
            parts.append(field_not_in("artist_id", self.exclude_artists))
        if self.released_after is not None or self.released_before is not None:
            parts.append('release_date != ""')  # unknown dates never pass a date filter
        if self.released_after is not None:
            parts.append(field_cmp("release_date", ">=", self.released_after))
        if self.released_before is not None:
            parts.append(field_cmp("release_date", "<=", self.released_before))
        return " and ".join(p for p in parts if p)
