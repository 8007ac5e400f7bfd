"""Track vectors and metadata in Milvus: the store behind audio k-NN and cold start.

``TrackStore`` wraps ``pymilvus.MilvusClient`` (connection, locking, error translation) with
the writes and reads the pipeline and the query API make, so the rest of the code never sees
Milvus types or exceptions. The same class talks to the embedded Milvus Lite and to a Milvus
server; only ``uri`` and the index settings change. What it delegates:

* the collection's fields, limits, rows, errors, index and DDL: ``serving.milvus_schema``;
* the consistency level of each read (Bounded plus read-your-writes):
  ``serving.milvus_consistency``;
* quoting ids into filter expressions: ``serving.milvus_expr``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import numpy.typing as npt

from schemas.limits import track_id_of
from serving.milvus_consistency import DEFAULT_GRACEFUL_S, ReadLevels
from serving.milvus_expr import NOTHING, track_ids_in, track_ids_not_in
from serving.milvus_schema import (
    HIT_FIELDS,
    META_FIELDS,
    Hit,
    IndexSpec,
    MilvusError,
    MilvusUnavailable,
    TrackRow,
    check_fields,
    ensure_collection,
    hit_of,
    row_of,
    to_entity,
)

if TYPE_CHECKING:
    from schemas.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

# Milvus rejects a search or query asking for more than this many results.
MAX_LIMIT = 16_384
# An exclusion list longer than this is honoured by over-fetching instead of a filter
# expression, to keep the expression (parsed on every search) small.
_MAX_FILTER_IDS = 2_000


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


def _pairs(hits: Any) -> list[tuple[str, float]]:
    """(track id, cosine) of one query's hits. pymilvus's hits carry their ids and distances
    as two lists (``HybridHits.ids`` / ``.distances``): read those, not each hit's dict, which
    took two lookups per hit and a seventh of a saturated worker's CPU. Anything else (an
    older client) is read hit by hit."""
    ids, distances = getattr(hits, "ids", None), getattr(hits, "distances", None)
    if ids is not None and distances is not None and len(ids) == len(distances) == len(hits):
        return [(track_id_of(str(t)), float(d)) for t, d in zip(ids, distances, strict=True)]
    return [(track_id_of(str(r.get("id", r.get("track_id")))), float(r["distance"])) for r in hits]


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
        self.uri = uri
        self.collection = collection
        self.dim = dim
        self.timeout_s = timeout_s
        self.index = IndexSpec(
            index_type=index_type,
            metric=metric,
            nlist=nlist,
            nprobe=nprobe,
            hnsw_m=hnsw_m,
            hnsw_ef_construction=hnsw_ef_construction,
            hnsw_ef=hnsw_ef,
            scalar_index=scalar_index,
        )
        self.reads = ReadLevels(
            consistency=consistency, read_your_writes=read_your_writes, graceful_s=graceful_s
        )
        self._token = token  # "user:password" when the server has authentication on
        self._client: Any = None
        self._lock = threading.Lock()

    # The settings it was built with, under the settings' names (the worker's and the API's
    # stores are compared by them).
    @property
    def index_type(self) -> str:
        return self.index.index_type

    @property
    def hnsw_m(self) -> int:
        return self.index.hnsw_m

    @property
    def scalar_index(self) -> str:
        return self.index.scalar_index

    @property
    def consistency(self) -> str:
        return self.reads.consistency

    @property
    def graceful_s(self) -> float:
        return self.reads.graceful_s

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

    # --- collection ------------------------------------------------------------------

    def ensure_collection(self) -> None:
        """Create the collection with index if missing (idempotent), then load it."""
        self._call(
            "ensure_collection",
            lambda c: ensure_collection(
                c,
                collection=self.collection,
                dim=self.dim,
                index=self.index,
                consistency=self.consistency,
                timeout_s=self.timeout_s,
            ),
        )

    def check_fields(self) -> None:
        """Raise ``SchemaMismatch`` if the existing collection lacks a field of the schema."""
        self._call(
            "check_fields",
            lambda c: check_fields(c, collection=self.collection, timeout_s=self.timeout_s),
        )

    def drop(self) -> None:
        """Drop the collection if it exists (tests, re-indexing)."""
        self._call(
            "drop",
            lambda c: c.drop_collection(self.collection, timeout=self.timeout_s),
        )

    # --- writes ----------------------------------------------------------------------

    def upsert(self, rows: Sequence[TrackRow]) -> int:
        """Insert or replace rows by ``track_id``.

        Searchable by this store's next read at once (read-your-writes), by other processes
        within ``graceful_s`` (Bounded). Raises ``FieldTooLong`` (or ``ValueError``) before
        writing anything if a row breaks the schema's limits.
        """
        if not rows:
            return 0
        # Last one wins inside a batch, as it would across batches.
        entities = list({r.track_id: to_entity(r, dim=self.dim) for r in rows}.values())
        self._call(
            "upsert",
            lambda c: c.upsert(self.collection, entities, timeout=self.timeout_s),
        )
        self.reads.wrote()
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
        self.reads.deleted()

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
                    output_fields=[*META_FIELDS, "embedding"],
                    limit=limit,
                    timeout=self.timeout_s,
                    consistency_level=self.reads.level(),
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
        rows = (row_of(r) for r in res)
        return {row.track_id: row for row in rows}

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
                search_params=self.index.search_params(min(k, MAX_LIMIT)),
                anns_field="embedding",
                timeout=self.timeout_s,
                consistency_level=self.reads.level(),
            ),
        )
        out = [_pairs(hits) for hits in (res or [])]
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
                output_fields=HIT_FIELDS,
                search_params=self.index.search_params(limit),
                anns_field="embedding",
                timeout=self.timeout_s,
                consistency_level=self.reads.level(),
            ),
        )
        out = [[hit_of(r) for r in hits] for hits in (res or [])]
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
                output_fields=["track_id", *HIT_FIELDS],
                limit=MAX_LIMIT,
                timeout=self.timeout_s,
                consistency_level=self.reads.level(),
            ),
        )
        if len(res) >= MAX_LIMIT:
            log.warning(
                "recent(): more than %d uploads since %d; result truncated", MAX_LIMIT, since_ms
            )
        res.sort(key=lambda r: (-int(r["uploaded_at"]), r["track_id"]))
        return [hit_of(r, score=0.0) for r in res[:limit]]

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
