"""The API's collaborators at run time: injected factories, opened in the app's lifespan.

Milvus calls are blocking and go through one thread (``TrackStore`` serialises them
anyway); Triton and Kafka clients are async. Anything not connected yet answers 503.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
from aiokafka import AIOKafkaProducer

from models.spec import EncoderCard
from schemas.event_time import InputLimits
from schemas.settings import Settings
from serving.api.feed import FeedState, KafkaFeed
from serving.api.metrics import ApiMetrics
from serving.api.pipeline import PipelinePanel
from serving.api.problems import ProblemError
from serving.milvus_schema import Hit, MilvusError, MilvusUnavailable, SchemaMismatch, TrackRow
from serving.milvus_store import TrackStore
from serving.triton_client import AudioEncoderClient, TritonError

log = logging.getLogger(__name__)

T = TypeVar("T")

_RETRY_S = 1.0


@dataclass(frozen=True)
class ApiDeps:
    """What the API is built from; production and tests differ only here."""

    settings: Settings
    card: EncoderCard
    store_factory: Callable[[], TrackStore]
    encoder_factory: Callable[[], AudioEncoderClient]
    producer_factory: Callable[[], AIOKafkaProducer]
    panel: PipelinePanel


class Runtime:
    """Open clients and the Kafka view of one API process."""

    def __init__(self, *, deps: ApiDeps, metrics: ApiMetrics) -> None:
        self.deps = deps
        self.settings = deps.settings
        self.metrics = metrics
        self.state = FeedState(
            history=deps.settings.api_history, limits=InputLimits.from_settings(deps.settings)
        )
        self.feed = KafkaFeed(settings=deps.settings, state=self.state, metrics=metrics)
        self.store: TrackStore | None = None
        self.encoder: AudioEncoderClient | None = None
        self.producer: AIOKafkaProducer | None = None
        self._collection_seen = False
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="api-milvus")
        self._tasks: list[asyncio.Task[Any]] = []

    async def start(self) -> None:
        """Start the producer (fails fast without Kafka), then connect the rest in the
        background so the process answers /health at once."""
        producer = self.deps.producer_factory()
        await producer.start()
        self.producer = producer
        self._tasks = [
            asyncio.create_task(self.feed.run(), name="feed"),
            asyncio.create_task(self._connect_store(), name="milvus"),
            asyncio.create_task(self._connect_encoder(), name="triton"),
        ]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.encoder is not None:
            await self.encoder.close()
        if self.producer is not None:
            await self.producer.stop()
        if self.store is not None:
            await asyncio.get_running_loop().run_in_executor(self._pool, self.store.close)
        self._pool.shutdown(wait=False)

    async def _connect_store(self) -> None:
        loop = asyncio.get_running_loop()
        while self.store is None:
            store = self.deps.store_factory()
            try:
                await loop.run_in_executor(self._pool, store.open)
                self.store = store
            except MilvusError as exc:
                log.warning("Milvus not reachable yet: %s", exc)
                await asyncio.sleep(_RETRY_S)

    async def _connect_encoder(self) -> None:
        while self.encoder is None:
            enc = self.deps.encoder_factory()
            try:
                await enc.__aenter__()
                self.encoder = enc
            except TritonError as exc:
                log.warning("Triton not ready yet: %s", exc)
                await asyncio.sleep(_RETRY_S)

    def components(self) -> dict[str, bool]:
        return {
            "kafka_feed": self.feed.caught_up.is_set(),
            "milvus": self.store is not None,
            "triton": self.encoder is not None,
        }

    # --- Milvus ----------------------------------------------------------------------

    async def rows(self, track_ids: list[str]) -> dict[str, TrackRow]:
        """Stored rows of the ids that have audio embedded."""
        return await self._milvus(lambda s: s.get(track_ids), empty={})

    async def search(self, vector: npt.ArrayLike, *, k: int, where: str) -> list[Hit]:
        """Nearest stored tracks passing ``where`` (a ``serving.track_filter`` expression)."""
        vec = np.asarray(vector, dtype=np.float32)
        return await self._milvus(lambda s: s.search_where(vec, k=k, where=where), empty=[])

    async def _milvus(self, fn: Callable[[TrackStore], T], *, empty: T) -> T:
        """``fn(store)`` on the Milvus thread; ``empty`` while no track is stored yet.

        Raises problem 503 when Milvus is not connected or unreachable.
        """
        store = self.store
        if store is None:
            raise ProblemError(503, "not connected to Milvus yet")
        loop = asyncio.get_running_loop()

        def call() -> T:
            if not self._collection_seen:
                if not store.exists():
                    return empty
                # The API only reads, so it never runs ensure_collection: check here that
                # the collection is not from before a schema change, or every read would
                # fail with a server error that does not say why.
                store.check_fields()
                self._collection_seen = True
            return fn(store)

        try:
            return await loop.run_in_executor(self._pool, call)
        except MilvusUnavailable as exc:
            raise ProblemError(503, f"Milvus unavailable: {exc}") from exc
        except SchemaMismatch as exc:
            raise ProblemError(503, str(exc)) from exc

    def require_encoder(self) -> AudioEncoderClient:
        if self.encoder is None:
            raise ProblemError(503, "not connected to Triton yet")
        return self.encoder

    def require_producer(self) -> AIOKafkaProducer:
        if self.producer is None:
            raise ProblemError(503, "not connected to Kafka yet")
        return self.producer
