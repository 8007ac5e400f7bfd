"""The query API's genre from audio, without a server: the response models, the filters and
``POST /search/audio``'s two searches (nearest tracks; tracks of the file's genre)."""

from __future__ import annotations

from datetime import date
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from models.genre import UNKNOWN, GenrePrediction
from serving.api import routes
from serving.api.audio_query import QueryAudio
from serving.api.inspector import track_fragment
from serving.api.models import AudioSearchOut, GenreOut, SimilarTrack
from serving.api.problems import ProblemError
from serving.milvus_schema import Hit, TrackRow


def test_a_genre_out_is_bounded_and_frozen() -> None:
    g = GenreOut(label="rock", confidence=0.5)
    with pytest.raises(ValidationError):
        g.label = "pop"  # type: ignore[misc]
    for bad in (-0.1, 1.01):
        with pytest.raises(ValidationError):
            GenreOut(label="rock", confidence=bad)
    assert routes._genre_out("rock", 0.7500000298) == GenreOut(label="rock", confidence=0.75)
    assert routes._genre_out("", 0.0) == GenreOut(label="", confidence=0.0)


def test_the_audio_search_body_carries_the_genre_and_its_tracks() -> None:
    item = SimilarTrack(
        track_id="t",
        score=0.9,
        title="",
        artist_id="",
        genre="",
        top_tags=["rock"],
        audio_genre=GenreOut(label="rock", confidence=0.6),
    )
    body = AudioSearchOut(
        query="f.ogg",
        top_tags=["rock"],
        items=[item],
        genre=GenreOut(label="rock", confidence=0.6),
        same_genre=[item],
    )
    out = body.model_dump(mode="json")
    assert out["genre"] == {"label": "rock", "confidence": 0.6}
    assert out["same_genre"][0]["audio_genre"]["label"] == "rock"
    schema = AudioSearchOut.model_json_schema()
    assert {"genre", "same_genre", "items"} <= set(schema["required"])


def test_the_audio_genre_filter_takes_only_known_genres() -> None:
    f = routes.Filters(k=3, audio_genre="jazz", released_after=date(2020, 1, 1))
    assert 'audio_genre == "jazz"' in f.where()
    # The file's predicted genre replaces the requested one for the same-genre list.
    assert 'audio_genre == "rock"' in f.where(audio_genre="rock")
    assert 'release_date >= "2020-01-01"' in f.where(audio_genre="rock")
    with pytest.raises(ProblemError) as info:
        routes.Filters(audio_genre="Rock")
    assert info.value.status == 422


def _hit(tid: str, genre: str) -> Hit:
    return Hit(
        track_id=tid,
        score=0.5,
        artist_id="",
        genre="",
        top_tags=(),
        uploaded_at_ms=0,
        audio_genre=genre,
        audio_genre_confidence=0.5 if genre else 0.0,
    )


class _Runtime:
    """Records the filter of each search; every search answers one hit."""

    def __init__(self) -> None:
        self.wheres: list[str] = []

    async def search(self, vector: Any, *, k: int, where: str) -> list[Hit]:
        self.wheres.append(where)
        return [_hit(f"t{len(self.wheres)}", "electronic")]


@pytest.mark.parametrize(
    "predicted", [GenrePrediction(label="electronic", confidence=0.8), UNKNOWN]
)
async def test_search_audio_answers_the_files_genre_and_its_tracks(
    monkeypatch: pytest.MonkeyPatch, predicted: GenrePrediction
) -> None:
    async def embed(file: Any, rt: Any) -> QueryAudio:
        return QueryAudio(vector=np.ones(4, np.float32), top_tags=("House",), genre=predicted)

    monkeypatch.setattr(routes, "embed_upload", embed)
    rt = _Runtime()
    f = routes.Filters(k=2, released_after=date(2024, 1, 1), released_before=date(2024, 12, 31))
    out = await routes.search_audio(SimpleNamespace(filename="f.ogg"), rt, f)  # type: ignore[arg-type]
    assert out.genre == GenreOut(label=predicted.label, confidence=predicted.confidence)
    assert [i.track_id for i in out.items] == ["t1"] and "audio_genre" not in rt.wheres[0]
    if predicted.label:
        assert [i.track_id for i in out.same_genre] == ["t2"]
        assert rt.wheres[1] == (
            'audio_genre == "electronic" and release_date != "" '
            'and release_date >= "2024-01-01" and release_date <= "2024-12-31"'
        )
    else:  # unknown: no search, since "" would match every unlabelled track
        assert out.same_genre == [] and len(rt.wheres) == 1


def test_the_inspector_shows_the_genre_heard() -> None:
    row = TrackRow(
        track_id="t",
        embedding=np.ones(4, np.float32),
        artist_id="",
        genre="",
        release_date="",
        uploaded_at_ms=0,
        top_tags=(),
        model_version="v",
        audio_genre="jazz",
        audio_genre_confidence=0.625,
    )
    assert "genre from audio: jazz (0.62)" in track_fragment("t", row, [], {})


async def test_a_collection_from_before_the_genre_fields_is_a_clear_503() -> None:
    from models.convert_musicnn import MUSICNN_CARD
    from schemas.settings import Settings
    from serving.api.metrics import ApiMetrics
    from serving.api.pipeline import PipelinePanel
    from serving.api.runtime import ApiDeps, Runtime
    from serving.milvus_schema import SchemaMismatch

    class OldStore:
        def exists(self) -> bool:
            return True

        def check_fields(self) -> None:
            raise SchemaMismatch("collection 'tracks' predates the fields audio_genre")

    deps = ApiDeps(
        settings=Settings(kafka_bootstrap="localhost:1"),
        card=MUSICNN_CARD,
        store_factory=OldStore,  # type: ignore[arg-type]
        encoder_factory=lambda: None,  # type: ignore[arg-type,return-value]
        producer_factory=lambda: None,  # type: ignore[arg-type,return-value]
        panel=PipelinePanel(urls=[]),
    )
    rt = Runtime(deps=deps, metrics=ApiMetrics())
    rt.store = OldStore()  # type: ignore[assignment]
    with pytest.raises(ProblemError) as info:
        await rt.search(np.ones(4), k=1, where="")
    assert info.value.status == 503 and "predates the fields audio_genre" in info.value.detail
