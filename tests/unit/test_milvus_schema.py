"""The track store's pure parts, without a server: the schema's row checks
(serving/milvus_schema.py) and the read-level policy (serving/milvus_consistency.py). That
both Milvus backends honour them is tests/integration/test_broker_and_store.py."""

from __future__ import annotations

import numpy as np
import pytest

from serving.milvus_consistency import ReadLevels
from serving.milvus_schema import (
    META_FIELDS,
    FieldTooLong,
    IndexSpec,
    MilvusError,
    TrackRow,
    check_fields,
    hit_of,
    row_of,
    to_entity,
)


def _row(**over: object) -> TrackRow:
    fields: dict[str, object] = {
        "track_id": "it's-1",
        "embedding": np.ones(4, dtype=np.float32),
        "artist_id": "a",
        "genre": "rock",
        "release_date": "",
        "uploaded_at_ms": 7,
        "top_tags": ("x", "y"),
        "model_version": "m-1",
        "title": "é" * 300,
        "audio_genre": "electronic",
        "audio_genre_confidence": 0.625,
    }
    return TrackRow(**{**fields, **over})  # type: ignore[arg-type]


def test_an_entity_round_trips_and_the_title_is_cut_on_a_character() -> None:
    entity = to_entity(_row(), dim=4)
    assert entity["track_id"] == "it%27s-1" and entity["top_tags"] == "x,y"
    assert len(entity["title"].encode()) == 512 and entity["title"] == "é" * 256
    back = row_of(entity)
    assert back.track_id == "it's-1" and back.top_tags == ("x", "y")
    assert (back.audio_genre, back.audio_genre_confidence) == ("electronic", 0.625)
    hit = hit_of(entity, score=0.0)
    assert (hit.track_id, hit.score, hit.uploaded_at_ms) == ("it's-1", 0.0, 7)
    assert (hit.audio_genre, hit.audio_genre_confidence) == ("electronic", 0.625)


@pytest.mark.parametrize(
    ("over", "error"),
    [
        ({"artist_id": "a" * 129}, FieldTooLong),
        ({"embedding": np.zeros(4, dtype=np.float32)}, ValueError),
        ({"embedding": np.ones(3, dtype=np.float32)}, ValueError),
        ({"top_tags": ("a,b",)}, ValueError),
        ({"genre": "a\nb"}, ValueError),
        ({"audio_genre": "g" * 65}, FieldTooLong),
        ({"audio_genre": "a\rb"}, ValueError),
        ({"audio_genre_confidence": 1.5}, ValueError),
        ({"audio_genre_confidence": float("nan")}, ValueError),
    ],
)
def test_a_row_that_breaks_the_schema_is_refused(over: dict[str, object], error: type) -> None:
    with pytest.raises(error):
        to_entity(_row(**over), dim=4)


class _Described:
    """A client whose collection has these fields (describe_collection only)."""

    def __init__(self, names: list[str]) -> None:
        self.names = names

    def describe_collection(self, name: str, timeout: float) -> dict[str, object]:
        return {"fields": [{"name": n} for n in ["embedding", *self.names]]}


def test_a_collection_from_before_the_audio_genre_fails_clearly() -> None:
    check_fields(_Described(META_FIELDS), collection="tracks", timeout_s=1.0)
    old = [f for f in META_FIELDS if not f.startswith("audio_genre")]
    with pytest.raises(MilvusError, match="predates the fields audio_genre, audio_genre_conf"):
        check_fields(_Described(old), collection="tracks", timeout_s=1.0)


def test_index_spec_normalises_case_and_refuses_unknown_types() -> None:
    spec = dict(metric="cosine", nlist=1, nprobe=2, hnsw_m=3, hnsw_ef_construction=4, hnsw_ef=8)
    hnsw = IndexSpec(index_type="hnsw", scalar_index="stl_sort", **spec)  # type: ignore[arg-type]
    assert (hnsw.index_type, hnsw.metric, hnsw.scalar_index) == ("HNSW", "COSINE", "STL_SORT")
    assert hnsw.search_params(20) == {"metric_type": "COSINE", "params": {"ef": 20}}
    with pytest.raises(ValueError, match="index_type"):
        IndexSpec(index_type="DISKANN", scalar_index="", **spec)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="scalar_index"):
        IndexSpec(index_type="FLAT", scalar_index="BITMAP", **spec)  # type: ignore[arg-type]


def test_reads_are_session_after_a_write_and_strong_after_a_delete() -> None:
    now = [100.0]
    levels = ReadLevels(
        consistency="Bounded", read_your_writes=True, graceful_s=5.0, clock=lambda: now[0]
    )
    assert levels.level() == "Bounded"
    levels.wrote()
    now[0] += 4.9
    assert levels.level() == "Session"
    now[0] += 0.1
    assert levels.level() == "Bounded"
    levels.deleted()
    assert levels.level() == "Strong"
    strict = ReadLevels(consistency="Strong", read_your_writes=True, graceful_s=5.0)
    strict.wrote()
    assert strict.level() == "Strong"
    with pytest.raises(ValueError, match="consistency"):
        ReadLevels(consistency="Weak", read_your_writes=True, graceful_s=5.0)
