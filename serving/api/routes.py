"""The query endpoints: listeners' lists, tracks, audio search, seeding."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Security, UploadFile
from fastapi.security import APIKeyHeader
from pydantic import ValidationError
from starlette.datastructures import UploadFile as StarletteUpload

from models.genre import GENRES
from schemas.events import Interaction, InteractionType, ListKind
from serving.api.audio_query import embed_upload
from serving.api.models import (
    AudioSearchOut,
    GenreOut,
    HistoryOut,
    ListenersOut,
    Problem,
    RecommendationsOut,
    SeedIn,
    SeedOut,
    SimilarOut,
    SimilarTrack,
    TrackOut,
)
from serving.api.problems import PROBLEM_JSON, ProblemError
from serving.api.runtime import Runtime
from serving.milvus_schema import Hit, TrackRow
from serving.track_filter import TrackFilter

_KEY = APIKeyHeader(name="X-API-Key", auto_error=False, description="Needed by writes.")
_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": Problem, "content": {PROBLEM_JSON: {}}} for code in (404, 422, 503)
}

router = APIRouter(responses=_ERRORS)


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


Rt = Annotated[Runtime, Depends(runtime)]


def require_key(rt: Rt, key: Annotated[str | None, Security(_KEY)] = None) -> None:
    """Writes need ``X-API-Key`` when the ``api_key`` setting is set."""
    want = rt.settings.api_key.get_secret_value()
    if want and not secrets.compare_digest((key or "").encode(), want.encode()):
        raise ProblemError(401, "send the API key in the X-API-Key header")


@router.get("/users", tags=["listeners"])
def listeners(rt: Rt) -> ListenersOut:
    """Listeners seen on the interactions or recommendations topics."""
    return ListenersOut(user_ids=rt.state.listeners())


@router.get("/users/{user_id}/recommendations", tags=["listeners"])
def recommendations(
    user_id: str,
    rt: Rt,
    k: Annotated[int | None, Query(ge=1, le=1000)] = None,
    kind: Annotated[
        ListKind, Query(description="`new`: unheard tracks only; `mix`: favourites may return.")
    ] = ListKind.NEW,
) -> RecommendationsOut:
    """The latest list of ``kind`` emitted for the listener (from the ``recommendations``
    topic)."""
    rec = rt.state.latest(user_id, kind)
    if rec is None:
        raise ProblemError(404, f"no {kind} recommendations for listener {user_id!r} yet")
    return RecommendationsOut(
        user_id=rec.user_id,
        kind=rec.kind,
        generated_at=rec.generated_at,
        source_event_id=rec.source_event_id,
        model_version=rec.model_version,
        items=rec.items[:k] if k else rec.items,
    )


@router.get("/users/{user_id}/history", tags=["listeners"])
def history(user_id: str, rt: Rt) -> HistoryOut:
    """The listener's recent plays, skips and likes, newest first."""
    items = rt.state.history(user_id)
    if items is None:
        raise ProblemError(404, f"unknown listener {user_id!r}")
    return HistoryOut(user_id=user_id, items=items)


def _genre_out(label: str, confidence: float) -> GenreOut:
    # Stored as FLOAT (float32): rounded so 0.75 does not come back as 0.7500000000001.
    return GenreOut(label=label, confidence=round(min(max(confidence, 0.0), 1.0), 4))


def _track_out(track_id: str, row: TrackRow | None, rt: Rt) -> TrackOut:
    up = rt.state.uploads.get(track_id)
    return TrackOut(
        track_id=track_id,
        title=(row.title if row else "") or (up.title if up and up.title else ""),
        artist_id=(row.artist_id if row else "") or (up.artist_id if up and up.artist_id else ""),
        genre=(row.genre if row else "") or (up.genre if up and up.genre else ""),
        release_date=(row.release_date if row else "")
        or (up.release_date.isoformat() if up and up.release_date else ""),
        top_tags=list(row.top_tags) if row else [],
        audio_genre=_genre_out(row.audio_genre, row.audio_genre_confidence) if row else None,
        has_audio=row is not None,
        uploaded_at=datetime.fromtimestamp(row.uploaded_at_ms / 1000, UTC)
        if row
        else (up.uploaded_at if up else None),
    )


@router.get("/tracks/{track_id}", tags=["tracks"])
async def track(track_id: str, rt: Rt) -> TrackOut:
    """Metadata, top tags, and whether the track's audio is embedded."""
    rows = await rt.rows([track_id])
    row = rows.get(track_id)
    if row is None and not rt.state.knows_track(track_id):
        raise ProblemError(404, f"unknown track {track_id!r}")
    return _track_out(track_id, row, rt)


def _similar(hit: Hit) -> SimilarTrack:
    return SimilarTrack(
        track_id=hit.track_id,
        score=round(hit.score, 6),
        title=hit.title,
        artist_id=hit.artist_id,
        genre=hit.genre,
        top_tags=list(hit.top_tags),
        audio_genre=_genre_out(hit.audio_genre, hit.audio_genre_confidence),
    )


class Filters:
    """Query parameters shared by the neighbour searches."""

    def __init__(
        self,
        k: Annotated[int, Query(ge=1, le=100, description="Neighbours to return.")] = 10,
        genre: Annotated[str | None, Query(description="Only this genre.")] = None,
        exclude_artist: Annotated[
            list[str] | None, Query(description="Leave out these artists (repeatable).")
        ] = None,
        released_after: Annotated[date | None, Query(description="Released on/after.")] = None,
        released_before: Annotated[date | None, Query(description="Released on/before.")] = None,
        audio_genre: Annotated[
            str | None, Query(description="Only this genre as predicted from the audio.")
        ] = None,
    ) -> None:
        if audio_genre is not None and audio_genre not in GENRES:
            raise ProblemError(422, f"audio_genre must be one of {', '.join(GENRES)}")
        self.k = k
        self.genre = genre
        self.exclude_artist = tuple(exclude_artist or ())
        self.released_after = released_after.isoformat() if released_after else None
        self.released_before = released_before.isoformat() if released_before else None
        self.audio_genre = audio_genre

    def where(self, exclude_ids: tuple[str, ...] = (), *, audio_genre: str | None = None) -> str:
        """The expression of these filters; ``audio_genre`` replaces the requested one."""
        return TrackFilter(
            exclude_ids=exclude_ids,
            genre=self.genre,
            exclude_artists=self.exclude_artist,
            released_after=self.released_after,
            released_before=self.released_before,
            audio_genre=audio_genre or self.audio_genre,
        ).expression()


@router.get("/tracks/{track_id}/similar", tags=["tracks"], responses={409: _ERRORS[404]})
async def similar(track_id: str, rt: Rt, f: Annotated[Filters, Depends()]) -> SimilarOut:
    """Audio neighbours of a track (cosine similarity of MusiCNN embeddings)."""
    rows = await rt.rows([track_id])
    row = rows.get(track_id)
    if row is None:
        if rt.state.knows_track(track_id):
            raise ProblemError(409, f"track {track_id!r} has no audio embedded")
        raise ProblemError(404, f"unknown track {track_id!r}")
    hits = await rt.search(row.embedding, k=f.k, where=f.where((track_id,)))
    items = [_similar(h) for h in hits]
    return SimilarOut(query=track_id, top_tags=list(row.top_tags), items=items)


@router.post("/search/audio", tags=["tracks"], responses={413: _ERRORS[404]})
async def search_audio(
    file: UploadFile, rt: Rt, f: Annotated[Filters, Depends()]
) -> AudioSearchOut:
    """Tracks that sound like an uploaded file; the file's genre predicted from its audio;
    and the tracks of that genre released within `released_after`/`released_before`,
    nearest by sound first (read-only: no key needed)."""
    q = await embed_upload(file, rt)
    hits = await rt.search(q.vector, k=f.k, where=f.where())
    label = q.genre.label
    # An unknown genre has no tracks "of" it: "" would match every track never labelled.
    same = await rt.search(q.vector, k=f.k, where=f.where(audio_genre=label)) if label else []
    return AudioSearchOut(
        query=file.filename or "upload",
        top_tags=list(q.top_tags),
        items=[_similar(h) for h in hits],
        genre=_genre_out(label, q.genre.confidence),
        same_genre=[_similar(h) for h in same],
    )


_SEED_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": SeedIn.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
        },
    }
}


async def _seed_tracks(
    request: Request, rt: Runtime
) -> tuple[list[str], Literal["track_ids", "audio"]]:
    """Track ids from a JSON body, or the nearest tracks to an uploaded file."""
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("multipart/form-data"):
        form = await request.form()
        file = form.get("file")
        if not isinstance(file, StarletteUpload):
            raise ProblemError(422, "multipart body needs a 'file' part")
        q = await embed_upload(file, rt)
        n = rt.settings.api_seed_tracks
        hits = await rt.search(q.vector, k=n, where="")
        if not hits:
            raise ProblemError(409, "no tracks stored yet to seed from")
        return [h.track_id for h in hits], "audio"
    if not ctype.startswith("application/json"):
        raise ProblemError(415, "send application/json {track_ids} or multipart/form-data file")
    try:
        body = SeedIn.model_validate_json(await request.body())
    except ValidationError as exc:
        raise ProblemError(422, str(exc)) from exc
    ids = list(dict.fromkeys(body.track_ids))
    stored = await rt.rows(ids)
    unknown = [t for t in ids if t not in stored and not rt.state.knows_track(t)]
    if unknown:
        raise ProblemError(422, f"unknown tracks: {', '.join(unknown)}")
    return ids, "track_ids"


@router.post(
    "/users/{user_id}/seed",
    tags=["listeners"],
    status_code=202,
    dependencies=[Depends(require_key)],
    openapi_extra=_SEED_BODY,
    responses={401: _ERRORS[404], 409: _ERRORS[404], 415: _ERRORS[404]},
)
async def seed(user_id: str, request: Request, rt: Rt) -> SeedOut:
    """Cold start: publish a ``like`` per favourite track (or per nearest track to a file)
    on the ``interactions`` topic; the listener's next list reflects them."""
    user_id = user_id.strip()
    if not 0 < len(user_id) <= 128:
        raise ProblemError(422, "user_id must be 1 to 128 characters")
    producer = rt.require_producer()
    ids, source = await _seed_tracks(request, rt)
    s, now, event_ids = rt.settings, datetime.now(UTC), []
    for i, tid in enumerate(ids):
        ev = Interaction(
            event_id=uuid.uuid4().hex,
            type=InteractionType.LIKE,
            user_id=user_id,
            track_id=tid,
            occurred_at=now + timedelta(milliseconds=i),  # keeps their order
        )
        await producer.send(
            s.topic(s.interactions_topic), key=user_id.encode(), value=ev.model_dump_json().encode()
        )
        event_ids.append(ev.event_id)
    await producer.flush()
    rt.metrics.published.inc(len(event_ids))
    return SeedOut(user_id=user_id, track_ids=ids, event_ids=event_ids, source=source)
