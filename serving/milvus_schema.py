"""The track collection's shape in Milvus: its fields and their limits, the rows and hits
the rest of the code sees, the errors, the index, and the DDL that creates it.

One schema for the embedded Milvus Lite (FLAT / IVF_FLAT / AUTOINDEX only) and a Milvus
server (HNSW too); only the :class:`IndexSpec` differs. Lite ignores VARCHAR ``max_length``,
which a server enforces, so :func:`to_entity` checks the limits before any write, in every
mode (:class:`FieldTooLong`). The store (``serving.milvus_store``) runs these against a
client; nothing here opens a connection.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from schemas.limits import TITLE_MAX_BYTES, VARCHAR_MAX_BYTES, track_id_of, track_key
from serving.milvus_expr import representable

log = logging.getLogger(__name__)

# VARCHAR limits of the schema: VARCHAR_MAX_BYTES (bytes of UTF-8, as the server counts them;
# schemas/limits.py, which the event contract validates against), checked before every write
# because Milvus Lite does not enforce them. Track ids are stored as their keys
# (schemas.limits.track_key).
_TITLE_CHARS = TITLE_MAX_BYTES  # title is cut (on a character boundary) to fit

INDEX_TYPES = ("FLAT", "IVF_FLAT", "HNSW", "AUTOINDEX")
# Scalar index types by server: STL_SORT on Milvus 2.3, INVERTED on Lite 2.5 and Milvus >= 2.4.
SCALAR_INDEX_TYPES = ("", "STL_SORT", "INVERTED")

META_FIELDS = [
    "track_id",
    "artist_id",
    "genre",
    "release_date",
    "uploaded_at",
    "top_tags",
    "model_version",
    "title",
    "audio_genre",
    "audio_genre_confidence",
]
# Fields that filter expressions match on: their values must be representable literals.
_MATCHED_FIELDS = ("track_id", "artist_id", "genre", "audio_genre")
HIT_FIELDS = [
    "artist_id",
    "genre",
    "top_tags",
    "uploaded_at",
    "title",
    "audio_genre",
    "audio_genre_confidence",
]


class MilvusError(RuntimeError):
    """A Milvus call failed (bad request, server-side error, schema mismatch)."""


class MilvusUnavailable(MilvusError):
    """Milvus cannot be reached (not started, crashed, network down, timed out)."""


class SchemaMismatch(MilvusError):
    """The collection was made with another schema (an older one, another dim)."""


class FieldTooLong(ValueError):
    """A row's text field exceeds the schema's VARCHAR ``max_length`` (nothing was written)."""


@dataclass(frozen=True, eq=False)
class TrackRow:
    """One track as stored: its audio embedding and the metadata recommendations need.

    ``eq=False`` because the embedding is an array (``==`` on arrays is element-wise).
    """

    track_id: str
    embedding: npt.NDArray[np.float32] | Sequence[float]
    artist_id: str
    genre: str
    release_date: str  # ISO date "YYYY-MM-DD" or "" when unknown
    uploaded_at_ms: int  # unix milliseconds
    top_tags: tuple[str, ...]
    model_version: str
    title: str = ""  # as uploaded; "" when the upload had none
    # Predicted from the audio's tags (models/genre.py); "" and 0.0 when unknown. Beside the
    # platform's ``genre``, never in place of it.
    audio_genre: str = ""
    audio_genre_confidence: float = 0.0


@dataclass(frozen=True)
class Hit:
    """A search or recency result. ``score`` is the cosine similarity (higher is closer);
    ``recent()`` results have ``score`` 0.0 since there is no query vector."""

    track_id: str
    score: float
    artist_id: str
    genre: str
    top_tags: tuple[str, ...]
    uploaded_at_ms: int
    title: str = ""
    audio_genre: str = ""
    audio_genre_confidence: float = 0.0


@dataclass(frozen=True, kw_only=True)
class IndexSpec:
    """How the embedding is indexed and searched, and the optional scalar index.

    No defaults: the store passes the settings' values (``TrackStore.from_settings``), so
    no second copy of them lives here.
    """

    index_type: str
    metric: str
    nlist: int
    nprobe: int
    hnsw_m: int
    hnsw_ef_construction: int
    hnsw_ef: int
    scalar_index: str

    def __post_init__(self) -> None:
        # Settings and callers spell them in any case; Milvus wants upper case.
        for name in ("index_type", "metric", "scalar_index"):
            object.__setattr__(self, name, getattr(self, name).upper())
        if self.index_type not in INDEX_TYPES:
            raise ValueError(f"unsupported index_type {self.index_type!r}")
        if self.scalar_index not in SCALAR_INDEX_TYPES:
            raise ValueError(
                f"scalar_index must be one of {SCALAR_INDEX_TYPES}: {self.scalar_index!r}"
            )

    def index_params(self, client: Any) -> Any:
        """The collection's index parameters (pymilvus ``IndexParams``)."""
        params = client.prepare_index_params()
        extra: dict[str, Any] = {}
        if self.index_type == "IVF_FLAT":
            extra = {"nlist": self.nlist}
        elif self.index_type == "HNSW":
            extra = {"M": self.hnsw_m, "efConstruction": self.hnsw_ef_construction}
        params.add_index(
            field_name="embedding",
            index_type=self.index_type,
            metric_type=self.metric,
            params=extra,
        )
        if self.scalar_index:
            # The one range filter (recent(): uploaded_at >= t); track_id is the primary key.
            params.add_index(field_name="uploaded_at", index_type=self.scalar_index)
        return params

    def search_params(self, k: int) -> dict[str, Any]:
        """Search parameters for ``k`` results."""
        params: dict[str, Any] = {"metric_type": self.metric}
        if self.index_type == "IVF_FLAT":
            params["params"] = {"nprobe": self.nprobe}
        elif self.index_type == "HNSW":
            params["params"] = {"ef": max(self.hnsw_ef, k)}  # HNSW needs ef >= k
        return params


# --- DDL -------------------------------------------------------------------------------


def ensure_collection(
    client: Any,
    *,
    collection: str,
    dim: int,
    index: IndexSpec,
    consistency: str,
    timeout_s: float,
) -> None:
    """Create the collection with its indexes if missing (idempotent), then load it; an
    existing one must store vectors of ``dim`` and have every field of the schema."""
    if client.has_collection(collection, timeout=timeout_s):
        check_dim(client, collection=collection, dim=dim, timeout_s=timeout_s)
        check_fields(client, collection=collection, timeout_s=timeout_s)
    else:
        log.info(
            "creating Milvus collection %r (dim %d, %s/%s)",
            collection,
            dim,
            index.index_type,
            index.metric,
        )
        client.create_collection(
            collection,
            schema=_schema(dim),
            index_params=index.index_params(client),
            consistency_level=consistency,
            timeout=timeout_s,
        )
    client.load_collection(collection, timeout=timeout_s)


def _schema(dim: int) -> Any:
    from pymilvus import DataType, MilvusClient

    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    lim = VARCHAR_MAX_BYTES
    schema.add_field("track_id", DataType.VARCHAR, is_primary=True, max_length=lim["track_id"])
    schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=dim)
    schema.add_field("artist_id", DataType.VARCHAR, max_length=lim["artist_id"])
    schema.add_field("genre", DataType.VARCHAR, max_length=lim["genre"])
    schema.add_field("release_date", DataType.VARCHAR, max_length=lim["release_date"])
    schema.add_field("uploaded_at", DataType.INT64)
    schema.add_field("top_tags", DataType.VARCHAR, max_length=lim["top_tags"])
    schema.add_field("model_version", DataType.VARCHAR, max_length=lim["model_version"])
    schema.add_field("title", DataType.VARCHAR, max_length=_TITLE_CHARS)
    schema.add_field("audio_genre", DataType.VARCHAR, max_length=lim["audio_genre"])
    schema.add_field("audio_genre_confidence", DataType.FLOAT)
    return schema


def check_dim(client: Any, *, collection: str, dim: int, timeout_s: float) -> None:
    """Raise :class:`MilvusError` unless ``collection`` stores embeddings of ``dim``."""
    info = client.describe_collection(collection, timeout=timeout_s)
    for f in info.get("fields", []):
        if f.get("name") == "embedding":
            stored = int(f.get("params", {}).get("dim", -1))
            if stored != dim:
                raise SchemaMismatch(
                    f"collection {collection!r} stores dim {stored}, expected {dim}"
                )
            return
    raise MilvusError(f"collection {collection!r} has no 'embedding' field")


def check_fields(client: Any, *, collection: str, timeout_s: float) -> None:
    """Raise :class:`SchemaMismatch` if ``collection`` lacks a field of the schema.

    A collection made before a field was added (``audio_genre``: issue 20) would fail every
    write and every read that names the field, with a server error that does not say why;
    this says why and what to do, once, at start. Not migrated in place: adding a field to
    a live collection needs Milvus >= 2.6 and Milvus Lite cannot.
    """
    info = client.describe_collection(collection, timeout=timeout_s)
    have = {f.get("name") for f in info.get("fields", [])}
    missing = [f for f in META_FIELDS if f not in have]
    if missing:
        raise SchemaMismatch(
            f"collection {collection!r} predates the fields {', '.join(missing)}: drop it "
            "and ingest the uploads again (replay the track-uploads topic), or set "
            "RESONATE_MILVUS_COLLECTION to a new collection name"
        )


# --- rows <-> entities -----------------------------------------------------------------


def to_entity(row: TrackRow, *, dim: int) -> dict[str, Any]:
    """The entity Milvus stores for ``row``; raises ``FieldTooLong`` (or ``ValueError``)
    if it breaks the schema, before anything is written."""
    vec = np.asarray(row.embedding, dtype=np.float32).reshape(-1)
    if vec.shape[0] != dim:
        raise ValueError(f"{row.track_id}: embedding has dim {vec.shape[0]}, not {dim}")
    if not np.all(np.isfinite(vec)) or not np.any(vec):
        # A zero or NaN vector has no cosine similarity and would poison search results.
        raise ValueError(f"{row.track_id}: embedding is zero or not finite")
    for tag in row.top_tags:
        if "," in tag:
            raise ValueError(f"{row.track_id}: tag {tag!r} contains a comma")
    if not 0.0 <= row.audio_genre_confidence <= 1.0:  # NaN fails this too
        raise ValueError(f"{row.track_id}: audio_genre_confidence is not in [0, 1]")
    entity: dict[str, Any] = {
        "track_id": track_key(row.track_id),
        "embedding": vec.tolist(),
        "artist_id": row.artist_id,
        "genre": row.genre,
        "release_date": row.release_date,
        "uploaded_at": int(row.uploaded_at_ms),
        "top_tags": ",".join(row.top_tags),
        "model_version": row.model_version,
        # max_length counts bytes: cut on a character boundary below it.
        "title": row.title.encode()[:_TITLE_CHARS].decode(errors="ignore"),
        "audio_genre": row.audio_genre,
        "audio_genre_confidence": float(row.audio_genre_confidence),
    }
    for name in _MATCHED_FIELDS:
        if not representable(entity[name]):
            # No expression could ever match it again (serving/milvus_expr.py).
            raise ValueError(f"track {row.track_id[:64]!r}: {name} holds a control character")
    for name, limit in VARCHAR_MAX_BYTES.items():
        size = len(entity[name].encode("utf-8"))
        if size > limit:
            raise FieldTooLong(
                f"track {row.track_id[:64]!r}: {name} is {size} bytes (UTF-8), over the "
                f"schema limit of {limit} (Milvus VARCHAR max_length); nothing was written"
            )
    return entity


def row_of(r: Mapping[str, Any]) -> TrackRow:
    """The row of a query result holding ``META_FIELDS`` and the embedding."""
    return TrackRow(
        track_id=track_id_of(r["track_id"]),
        embedding=np.asarray(r["embedding"], dtype=np.float32),
        artist_id=r["artist_id"],
        genre=r["genre"],
        release_date=r["release_date"],
        uploaded_at_ms=int(r["uploaded_at"]),
        top_tags=split_tags(r["top_tags"]),
        model_version=r["model_version"],
        title=r.get("title", ""),
        audio_genre=r.get("audio_genre", ""),
        audio_genre_confidence=float(r.get("audio_genre_confidence", 0.0)),
    )


def hit_of(r: Mapping[str, Any], *, score: float | None = None) -> Hit:
    """The hit of a search result (scored by its distance) or of a query result holding
    ``HIT_FIELDS`` (scored ``score``)."""
    ent = r.get("entity", r)
    return Hit(
        track_id=track_id_of(str(r.get("id", r.get("track_id")))),
        score=float(r["distance"]) if score is None else score,
        artist_id=ent["artist_id"],
        genre=ent["genre"],
        top_tags=split_tags(ent["top_tags"]),
        uploaded_at_ms=int(ent["uploaded_at"]),
        title=ent.get("title", ""),
        audio_genre=ent.get("audio_genre", ""),
        audio_genre_confidence=float(ent.get("audio_genre_confidence", 0.0)),
    )


def split_tags(value: str) -> tuple[str, ...]:
    """Stored tags (comma-joined) as a tuple."""
    return tuple(t for t in value.split(",") if t)
