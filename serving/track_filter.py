"""Filters of the query API's neighbour search, as Milvus boolean expressions (pure)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass


def _id_list(ids: Iterable[str]) -> str:
    # JSON string literals are valid Milvus string literals: values cannot break out.
    return "[" + ",".join(json.dumps(i) for i in ids) + "]"


@dataclass(frozen=True)
class TrackFilter:
    """Which tracks a filtered search may return (every set condition must hold)."""

    exclude_ids: tuple[str, ...] = ()
    genre: str | None = None
    exclude_artists: tuple[str, ...] = ()
    released_after: str | None = None  # ISO date, inclusive
    released_before: str | None = None  # ISO date, inclusive

    def expression(self) -> str:
        """The Milvus boolean expression (values JSON-quoted: no injection)."""
        parts: list[str] = []
        if self.exclude_ids:
            parts.append(f"track_id not in {_id_list(self.exclude_ids)}")
        if self.genre is not None:
            parts.append(f"genre == {json.dumps(self.genre)}")
        if self.exclude_artists:
            parts.append(f"artist_id not in {_id_list(self.exclude_artists)}")
        if self.released_after is not None or self.released_before is not None:
            parts.append('release_date != ""')  # unknown dates never pass a date filter
        if self.released_after is not None:
            parts.append(f"release_date >= {json.dumps(self.released_after)}")
        if self.released_before is not None:
            parts.append(f"release_date <= {json.dumps(self.released_before)}")
        return " and ".join(parts)
