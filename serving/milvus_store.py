"""Track vectors and metadata in Milvus: the store behind audio k-NN and cold start.

``TrackStore`` wraps ``pymilvus.MilvusClient`` with the one schema Resonate uses, so the
rest of the code never sees Milvus types or exceptions. The same class talks to the
embedded Milvus Lite (FLAT / IVF_FLAT / AUTOINDEX only) and to a Milvus server (HNSW too);
only ``uri`` and ``index_type`` change.

Visibility (the weakest consistency that is still correct): reads use ``consistency``
("Bounded" by default) and no ``flush`` (which seals segments and is slow) is ever needed.

* Recommendation reads (``search``, ``get``, ``recent``) tolerate seconds of staleness: a
  track uploaded a moment ago reaches listeners through the fresh-upload candidates anyway,
  and the next refresh sees it. "Bounded" guarantees at most ``common.gracefulTime`` (5 s by
  default) of staleness without waiting for the server's time tick. Measured on the Milvus
  2.3.5 standalone server (HNSW, 2 cores): a search takes ~200 ms with "Strong" (it waits for
  the next time tick) and ~2-3 ms with "Bounded" ("Session" ~4 ms, "Eventually" ~2 ms).
* Read-your-writes where it matters: with ``read_your_writes`` (default), a read issued by
  this process within ``graceful_s`` of its own ``upsert`` is sent as "Session", whose
  guarantee timestamp is that write's, so the just-written rows are found by the very next
  search (it waits for that one write, ~200 ms on a server, only in that window). Together
  the guarantee is max(own last write, now - gracefulTime): Bounded plus read-your-writes.
* ``count()`` is exact ("Strong"); it is not on a hot path.

Milvus Lite (one process, no time tick) shows every write to the very next read at any
level. Lite also ignores VARCHAR ``max_length``, which a server enforces, so the limits are
checked here before writing, in every mode (:class:`FieldTooLong`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import numpy.typing as npt

from schemas.limits import TITLE_MAX_BYTES, VARCHAR_MAX_BYTES, track_id_of, track_key
from serving.milvus_expr import NOTHING, representable, track_ids_in, track_ids_not_in

if TYPE_CHECKING:
    from schemas.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

# Milvus rejects a search or query asking for more than this many results.
MAX_LIMIT = 16_384
# An exclusion list longer than this is honoured by over-fetching instead of a filter
# expression, to keep the expression (parsed on every search) small.
_MAX_FILTER_IDS = 2_000
CONSISTENCY_LEVELS = ("Strong", "Bounded", "Session", "Eventually")
# Milvus' default common.gracefulTime: how stale a "Bounded" read may be.
DEFAULT_GRACEFUL_S = 5.0

# VARCHAR limits of the schema (bytes of UTF-8, as the server counts them; schemas/limits.py,
# which the event contract validates against); checked before every write because Milvus
# Lite does not enforce them. Track ids are stored as their keys (schemas.limits.track_key).
# Scalar index types by server: STL_SORT on Milvus 2.3, INVERTED on Lite 2.5 and Milvus >= 2.4.
SCALAR_INDEX_TYPES = ("", "STL_SORT", "INVERTED")
_TITLE_CHARS = TITLE_MAX_BYTES  # title is cut (on a character boundary) to fit

_META_FIELDS = [
    "track_id",
    "artist_id",
    "genre",
    "release_date",
    "uploaded_at",
    "top_tags",
    "model_version",
    "title",
]
# Fields that filter expressions match on: their values must be representable literals.
_MATCHED_FIELDS = ("track_id", "artist_id", "genre")
_HIT_FIELDS = ["artist_id", "genre", "top_tags", "uploaded_at", "title"]


class MilvusError(RuntimeError):
    """A Milvus call failed (bad request, server-side error, schema mismatch)."""


class MilvusUnavailable(MilvusError):
    """Milvus cannot be reached (not started, crashed, network down, timed out)."""


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


def _hit(r: Mapping[str, Any]) -> Hit:
    ent = r.get("entity", r)
    return Hit(
        track_id=track_id_of(str(r.get("id", r.get("track_id")))),
        score=float(r["distance"]),
        artist_id=ent["artist_id"],
        genre=ent["genre"],
        top_tags=_split_tags(ent["top_tags"]),
        uploaded_at_ms=int(ent["uploaded_at"]),
        title=ent.get("title", ""),
    )


def _split_tags(value: str) -> tuple[str, ...]:
    return tuple(t for t in value.split(",") if t)


def _chunks(ids: Sequence[str], size: int = 1_000) -> Iterable[Sequence[str]]:
    # Bounded expressions: Milvus parses each one, and a huge literal list is slow to parse.
    return (ids[i : i + size] for i in range(0, len(ids), size))


def _is_unavailable(exc: BaseException) -> bool:
    from pymilvus.exceptions import ConnectionNotExistException, MilvusUnavailableException

    if isinstance(exc, MilvusUnavailableException | ConnectionNotExistException):
        return True
    try:
        import grpc
    except ImportError:  # pragma: no cover - pymilvus depends on grpc
        return False
    if isinstance(exc, grpc.RpcError):
        code = exc.code() if callable(getattr(exc, "code", None)) else None
        return code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    text = str(exc).lower()
    return any(
        s in text
        for s in ("unavailable", "fail connecting", "deadline exceeded", "connection refused")
    )


class TrackStore:
    """Client of the track collection; use as a context manager.

    Thread safety: the wrapper may be used from one thread at a time; an internal lock
    serialises calls, so the Faust agents can share one instance through a thread
    executor without interleaving requests. Create one per process (not per call):
    entering it opens a gRPC channel and waits for the server.
    """

    def __init__(
        self,
        *,
        uri: str,
        collection: str,
        dim: int,
        timeout_s: float = 30.0,
        index_type: str = "FLAT",
        metric: str = "COSINE",
        nlist: int = 1024,
        nprobe: int = 32,
        hnsw_m: int = 16,
        hnsw_ef_construction: int = 200,
        hnsw_ef: int = 128,
        consistency: str = "Bounded",
        read_your_writes: bool = True,
        graceful_s: float = DEFAULT_GRACEFUL_S,
        scalar_index: str = "",
        token: str = "",
    ) -> None:
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        index_type = index_type.upper()
        if index_type not in {"FLAT", "IVF_FLAT", "HNSW", "AUTOINDEX"}:
            raise ValueError(f"unsupported index_type {index_type!r}")
        if consistency not in CONSISTENCY_LEVELS:
            raise ValueError(f"consistency must be one of {CONSISTENCY_LEVELS}: {consistency!r}")
        if scalar_index.upper() not in SCALAR_INDEX_TYPES:
            raise ValueError(f"scalar_index must be one of {SCALAR_INDEX_TYPES}: {scalar_index!r}")
        self.uri = uri
        self.collection = collection
        self.dim = dim
        self.timeout_s = timeout_s
        self.index_type = index_type
        self.metric = metric.upper()
        self.nlist = nlist
        self.nprobe = nprobe
        self.hnsw_m = hnsw_m
        self.hnsw_ef_construction = hnsw_ef_construction
        self.hnsw_ef = hnsw_ef
        self.consistency = consistency
        self.read_your_writes = read_your_writes
        self.graceful_s = graceful_s
        self.scalar_index = scalar_index.upper()
        self._token = token  # "user:password" when the server has authentication on
        self._last_write = -float("inf")  # monotonic time of this store's last upsert/delete
        self._last_delete = -float("inf")  # ... of its last delete (see _read_level)
        self._client: Any = None
        self._lock = threading.Lock()

    # --- lifecycle -------------------------------------------------------------------

    @classmethod
    def from_settings(cls, settings: Settings, *, dim: int) -> TrackStore:
        """The one way a process builds its store: the worker, the query API, the demo and
        the bench all get the same index, HNSW, scalar-index, consistency and credentials."""
        s = settings
        return cls(
            uri=s.milvus_uri,
            collection=s.milvus_collection,
            dim=dim,
            timeout_s=s.timeout_s,
            index_type=s.milvus_index,
            hnsw_m=s.milvus_hnsw_m,
            hnsw_ef_construction=s.milvus_hnsw_ef_construction,
            hnsw_ef=s.milvus_hnsw_ef,
            consistency=s.milvus_consistency,
            scalar_index=s.milvus_scalar_index,
            token=s.milvus_token.get_secret_value(),
        )

    def open(self) -> TrackStore:
        """Connect, waiting up to ``timeout_s`` for the server to answer."""
        from pymilvus import MilvusClient

        deadline = time.monotonic() + self.timeout_s
        last: BaseException | None = None
        while True:
            client: Any = None
            # Short attempts, bounded by what is left, so a dead server fails near timeout_s.
            attempt_s = min(5.0, max(0.5, deadline - time.monotonic()))
            try:
                client = MilvusClient(uri=self.uri, token=self._token, timeout=attempt_s)
                client.list_collections(timeout=attempt_s)
                self._client = client
                return self
            except Exception as exc:  # the server may still be booting: retry until deadline
                last = exc
                if client is not None:
                    client.close()
            if time.monotonic() >= deadline:
                raise MilvusUnavailable(
                    f"Milvus at {self.uri} not reachable within {self.timeout_s:.0f} s: {last}"
                ) from last
            time.sleep(0.3)

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def __enter__(self) -> TrackStore:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _call(self, what: str, fn: Callable[[Any], T]) -> T:
        """Run ``fn(client)`` under the lock, translating pymilvus errors into ours."""
        with self._lock:
            if self._client is None:
                raise MilvusError("TrackStore is not open (use it as a context manager)")
            try:
                return fn(self._client)
            except MilvusError:
                raise
            except Exception as exc:
                kind = MilvusUnavailable if _is_unavailable(exc) else MilvusError
                raise kind(f"Milvus {what} on {self.collection!r} failed: {exc}") from exc

    # --- schema ----------------------------------------------------------------------

    def _index_params(self, client: Any) -> Any:
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

    def _read_level(self) -> str:
        """Consistency of the next read: ``consistency``, or "Session" right after a write.

        Right after this store's own delete it is "Strong": measured on the Milvus 2.3
        server, a "Session" read still returns rows this client just deleted (pymilvus
        advances the session timestamp on inserts and upserts only). Deletes are rare
        (tests, re-indexing), so the ~200 ms time-tick wait is paid seldom.
        """
        now = time.monotonic()
        if self.read_your_writes and now - self._last_delete < self.graceful_s:
            return "Strong"
        if (
            self.read_your_writes
            and self.consistency in ("Bounded", "Eventually")
            and now - self._last_write < self.graceful_s
        ):
            return "Session"
        return self.consistency

    def _search_params(self, k: int) -> dict[str, Any]:
        params: dict[str, Any] = {"metric_type": self.metric}
        if self.index_type == "IVF_FLAT":
            params["params"] = {"nprobe": self.nprobe}
        elif self.index_type == "HNSW":
            params["params"] = {"ef": max(self.hnsw_ef, k)}  # HNSW needs ef >= k
        return params

    def ensure_collection(self) -> None:
        """Create the collection with index if missing (idempotent), then load it."""
        from pymilvus import DataType, MilvusClient

        def run(client: Any) -> None:
            if client.has_collection(self.collection, timeout=self.timeout_s):
                self._check_dim(client)
            else:
                schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
                lim = VARCHAR_MAX_BYTES
                schema.add_field(
                    "track_id", DataType.VARCHAR, is_primary=True, max_length=lim["track_id"]
                )
                schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=self.dim)
                schema.add_field("artist_id", DataType.VARCHAR, max_length=lim["artist_id"])
                schema.add_field("genre", DataType.VARCHAR, max_length=lim["genre"])
                schema.add_field("release_date", DataType.VARCHAR, max_length=lim["release_date"])
                schema.add_field("uploaded_at", DataType.INT64)
                schema.add_field("top_tags", DataType.VARCHAR, max_length=lim["top_tags"])
                schema.add_field("model_version", DataType.VARCHAR, max_length=lim["model_version"])
                schema.add_field("title", DataType.VARCHAR, max_length=_TITLE_CHARS)
                log.info(
                    "creating Milvus collection %r (dim %d, %s/%s)",
                    self.collection,
                    self.dim,
                    self.index_type,
                    self.metric,
                )
                client.create_collection(
                    self.collection,
                    schema=schema,
                    index_params=self._index_params(client),
                    consistency_level=self.consistency,
                    timeout=self.timeout_s,
                )
            client.load_collection(self.collection, timeout=self.timeout_s)

        self._call("ensure_collection", run)

    def _check_dim(self, client: Any) -> None:
        info = client.describe_collection(self.collection, timeout=self.timeout_s)
        for f in info.get("fields", []):
            if f.get("name") == "embedding":
                dim = int(f.get("params", {}).get("dim", -1))
                if dim != self.dim:
                    raise MilvusError(
                        f"collection {self.collection!r} stores dim {dim}, expected {self.dim}"
                    )
                return
        raise MilvusError(f"collection {self.collection!r} has no 'embedding' field")

    def drop(self) -> None:
        """Drop the collection if it exists (tests, re-indexing)."""
        self._call(
            "drop",
            lambda c: c.drop_collection(self.collection, timeout=self.timeout_s),
        )

    # --- writes ----------------------------------------------------------------------

    def _to_entity(self, row: TrackRow) -> dict[str, Any]:
        vec = np.asarray(row.embedding, dtype=np.float32).reshape(-1)
        if vec.shape[0] != self.dim:
            raise ValueError(f"{row.track_id}: embedding has dim {vec.shape[0]}, not {self.dim}")
        if not np.all(np.isfinite(vec)) or not np.any(vec):
            # A zero or NaN vector has no cosine similarity and would poison search results.
            raise ValueError(f"{row.track_id}: embedding is zero or not finite")
        for tag in row.top_tags:
            if "," in tag:
                raise ValueError(f"{row.track_id}: tag {tag!r} contains a comma")
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

    def upsert(self, rows: Sequence[TrackRow]) -> int:
        """Insert or replace rows by ``track_id``.

        Searchable by this store's next read at once (read-your-writes), by other processes
        within ``graceful_s`` (Bounded). Raises ``FieldTooLong`` (or ``ValueError``) before
        writing anything if a row breaks the schema's limits.
        """
        if not rows:
            return 0
        # Last one wins inside a batch, as it would across batches.
        entities = list({r.track_id: self._to_entity(r) for r in rows}.values())
        self._call(
            "upsert",
            lambda c: c.upsert(self.collection, entities, timeout=self.timeout_s),
        )
        self._last_write = time.monotonic()
        return len(entities)

    def delete(self, track_ids: Collection[str]) -> None:
        """Remove tracks by id (missing ids are ignored)."""
        if not track_ids:
            return
        # A filter we quote, not pymilvus' ids= (its repr quoting breaks on Lite).
        for chunk in _chunks(list(dict.fromkeys(track_ids))):
            where = track_ids_in(chunk)
            if where == NOTHING:
                continue  # unrepresentable ids are never stored
            self._call("delete", self._deleter(where))
        self._last_write = self._last_delete = time.monotonic()

    def _deleter(self, where: str) -> Callable[[Any], Any]:
        def run(c: Any) -> Any:
            return c.delete(self.collection, filter=where, timeout=self.timeout_s)

        return run

    # --- reads -----------------------------------------------------------------------

    def _getter(self, where: str, *, limit: int) -> Callable[[Any], list[dict[str, Any]]]:
        def run(c: Any) -> list[dict[str, Any]]:
            return list(
                c.query(
                    self.collection,
                    filter=where,
                    output_fields=[*_META_FIELDS, "embedding"],
                    limit=limit,
                    timeout=self.timeout_s,
                    consistency_level=self._read_level(),
                )
            )

        return run

    def get(self, track_ids: Collection[str]) -> dict[str, TrackRow]:
        """Rows (with vectors) of the ids that exist; missing ids are absent."""
        if not track_ids:
            return {}
        res: list[dict[str, Any]] = []
        for chunk in _chunks(list(dict.fromkeys(track_ids))):
            where = track_ids_in(chunk)
            if where == NOTHING:
                continue  # unrepresentable ids are never stored
            res += self._call("get", self._getter(where, limit=len(chunk)))
        out: dict[str, TrackRow] = {}
        for r in res:
            tid = track_id_of(r["track_id"])
            out[tid] = TrackRow(
                track_id=tid,
                embedding=np.asarray(r["embedding"], dtype=np.float32),
                artist_id=r["artist_id"],
                genre=r["genre"],
                release_date=r["release_date"],
                uploaded_at_ms=int(r["uploaded_at"]),
                top_tags=_split_tags(r["top_tags"]),
                model_version=r["model_version"],
                title=r.get("title", ""),
            )
        return out

    def search(
        self,
        vector: npt.NDArray[np.float32] | Sequence[float],
        *,
        k: int,
        exclude: Collection[str] = (),
    ) -> list[Hit]:
        """The ``k`` nearest tracks by cosine similarity, best first, none of ``exclude``.

        Short exclusion lists become a ``track_id not in [...]`` filter (exact: Milvus
        pre-filters); very long ones are honoured by over-fetching and dropping.
        """
        if k < 1:
            return []
        query = self._query(vector)
        excluded = set(exclude)
        expr = ""
        limit = k
        if excluded and len(excluded) <= _MAX_FILTER_IDS:
            expr = track_ids_not_in(sorted(excluded))
        elif excluded:
            limit = k + len(excluded)
        limit = min(limit, MAX_LIMIT)
        found = self._raw_search("search", [query], limit=limit, where=expr)[0]
        hits: list[Hit] = []
        for hit in found:
            if hit.track_id in excluded:
                continue
            hits.append(hit)
            if len(hits) == k:
                break
        return hits

    def search_many(
        self,
        vectors: Sequence[npt.NDArray[np.float32] | Sequence[float]],
        *,
        k: int,
    ) -> list[list[tuple[str, float]]]:
        """The ``k`` nearest tracks of each query vector as (track id, cosine), best first,
        in ONE call (one round trip and one pass over the index for a whole batch of
        listeners). No exclusion filter: each listener excludes different tracks, so callers
        over-fetch and drop. No stored field comes back.

        Why no fields: the worker ranks with the artist and upload time its vector cache holds for
        every hit anyway, and pymilvus decodes each returned field cell by cell in Python:
        five fields over ~100 hits per listener were a fifth of a saturated worker's CPU.
        """
        if k < 1 or not vectors:
            return [[] for _ in vectors]
        data = [self._query(v) for v in vectors]
        res = self._call(
            "search",
            lambda c: c.search(
                self.collection,
                data=data,
                limit=min(k, MAX_LIMIT),
                output_fields=[],
                search_params=self._search_params(min(k, MAX_LIMIT)),
                anns_field="embedding",
                timeout=self.timeout_s,
                consistency_level=self._read_level(),
            ),
        )
        out = [
            [(track_id_of(str(r.get("id", r.get("track_id")))), float(r["distance"])) for r in hits]
            for hits in (res or [])
        ]
        return out + [[] for _ in range(len(data) - len(out))]

    def _query(self, vector: npt.NDArray[np.float32] | Sequence[float]) -> list[float]:
        vec = np.asarray(vector, dtype=np.float32).reshape(-1)
        if vec.shape[0] != self.dim:
            raise ValueError(f"query vector has dim {vec.shape[0]}, not {self.dim}")
        out: list[float] = vec.tolist()
        return out

    def _raw_search(
        self, what: str, data: list[list[float]], *, limit: int, where: str = ""
    ) -> list[list[Hit]]:
        """One search call for every row of ``data``; hits per row, best first."""
        res = self._call(
            what,
            lambda c: c.search(
                self.collection,
                data=data,
                filter=where,
                limit=limit,
                output_fields=_HIT_FIELDS,
                search_params=self._search_params(limit),
                anns_field="embedding",
                timeout=self.timeout_s,
                consistency_level=self._read_level(),
            ),
        )
        out = [[_hit(r) for r in hits] for hits in (res or [])]
        return out + [[] for _ in range(len(data) - len(out))]

    def recent(self, since_ms: int, limit: int) -> list[Hit]:
        """Tracks uploaded at or after ``since_ms``, newest first (cold-start candidates).

        Milvus queries cannot sort, so this fetches up to ``MAX_LIMIT`` matches and sorts
        here; keep ``since_ms`` recent enough that the window holds fewer uploads.
        """
        if limit < 1:
            return []
        res = self._call(
            "recent",
            lambda c: c.query(
                self.collection,
                filter=f"uploaded_at >= {int(since_ms)}",
                output_fields=["track_id", *_HIT_FIELDS],
                limit=MAX_LIMIT,
                timeout=self.timeout_s,
                consistency_level=self._read_level(),
            ),
        )
        if len(res) >= MAX_LIMIT:
            log.warning(
                "recent(): more than %d uploads since %d; result truncated", MAX_LIMIT, since_ms
            )
        res.sort(key=lambda r: (-int(r["uploaded_at"]), r["track_id"]))
        return [
            Hit(
                track_id=track_id_of(r["track_id"]),
                score=0.0,
                artist_id=r["artist_id"],
                genre=r["genre"],
                top_tags=_split_tags(r["top_tags"]),
                uploaded_at_ms=int(r["uploaded_at"]),
                title=r.get("title", ""),
            )
            for r in res[:limit]
        ]

    def count(self) -> int:
        """Number of live rows (replaced and deleted rows are not counted)."""
        res = self._call(
            "count",
            lambda c: c.query(
                self.collection,
                filter="",
                output_fields=["count(*)"],
                timeout=self.timeout_s,
                consistency_level="Strong",
            ),
        )
        return int(res[0]["count(*)"]) if res else 0

    # --- query API (serving/api) -------------------------------------------------------

    def exists(self) -> bool:
        """Whether the collection exists yet (the first stored upload creates it)."""
        return bool(
            self._call(
                "exists", lambda c: c.has_collection(self.collection, timeout=self.timeout_s)
            )
        )

    def search_where(
        self,
        vector: npt.NDArray[np.float32] | Sequence[float],
        *,
        k: int,
        where: str,
    ) -> list[Hit]:
        """The ``k`` nearest tracks that pass the boolean expression ``where`` ("" = all;
        Milvus pre-filters, so the result is exact). ``serving.track_filter`` builds it."""
        if k < 1:
            return []
        return self._raw_search(
            "search_where", [self._query(vector)], limit=min(k, MAX_LIMIT), where=where
        )[0]
