"""The collaborators the agents need, injected so tests and production differ only here,
and the clients a worker opens once, on its own event loop, on first use."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from models.fusion_weights import WeightsSource
from models.spec import EncoderCard
from schemas.settings import Settings
from serving.milvus_store import TrackStore
from serving.triton_client import AudioEncoderClient
from serving.user_encoder_client import UserEncoderClient
from streams.candidates import sequence_top_n
from streams.catalog import Catalog, CatalogFeed
from streams.metrics import Metrics
from streams.state import UserState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Deps:
    """Collaborators the agents need, injected so tests and production differ only here."""

    settings: Settings
    card: EncoderCard
    metrics: Metrics
    store_factory: Callable[[], TrackStore]
    encoder_factory: Callable[[], AudioEncoderClient]
    # Set when a trained user (sequence) encoder is served; None = training-free fusion only.
    user_encoder_factory: Callable[[], UserEncoderClient] | None = None
    # Reads the track-deltas topic into the worker's catalog; None (unit tests) = the
    # catalog holds only what this process folds itself.
    feed_factory: Callable[[Catalog], CatalogFeed] | None = None
    # The fusion weights artifact in force (hot-reloaded); None = the settings' folder or
    # the built-in artifact.
    weights: WeightsSource | None = None


class Clients:
    """Clients opened once per worker, on the worker's own event loop, on first use."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        self._lock = asyncio.Lock()
        self._store: TrackStore | None = None
        self._encoder: AudioEncoderClient | None = None
        self._user_encoder: UserEncoderClient | None = None
        self._user_lock = asyncio.Lock()  # its own: a slow readiness wait must not block Milvus
        self.user_encoder_down_until = 0.0  # monotonic; after a failure, skip calls until then
        # Milvus calls are blocking; one thread keeps them ordered and off the loop.
        self.milvus_pool = ThreadPoolExecutor(1, thread_name_prefix="milvus")
        self.decode_pool = ThreadPoolExecutor(2, thread_name_prefix="decode")

    async def store(self) -> TrackStore:
        async with self._lock:
            if self._store is None:
                loop = asyncio.get_running_loop()
                store = self.deps.store_factory()
                await loop.run_in_executor(self.milvus_pool, store.__enter__)
                await loop.run_in_executor(self.milvus_pool, store.ensure_collection)
                self._store = store
            return self._store

    async def encoder(self) -> AudioEncoderClient:
        async with self._lock:
            if self._encoder is None:
                enc = self.deps.encoder_factory()
                await enc.__aenter__()
                self._encoder = enc
            return self._encoder

    async def user_encoder(self) -> UserEncoderClient:
        factory = self.deps.user_encoder_factory
        if factory is None:
            raise RuntimeError("no user encoder configured")
        async with self._user_lock:
            if self._user_encoder is None:
                client = factory()
                await client.__aenter__()
                self._user_encoder = client
            return self._user_encoder

    async def close(self) -> None:
        if self._user_encoder is not None:
            await self._user_encoder.__aexit__(None, None, None)
        if self._encoder is not None:
            await self._encoder.__aexit__(None, None, None)
        if self._store is not None:
            self._store.__exit__(None, None, None)
        self.milvus_pool.shutdown(wait=False)
        self.decode_pool.shutdown(wait=False)


# After a failed user-encoder call, refreshes skip it (training-free fusion) this long.
_USER_ENCODER_BACKOFF_S = 5.0


async def sequence_candidates(
    state: UserState, deps: Deps, lazy: Clients
) -> tuple[list[tuple[str, float]], str]:
    """The served sequence model's next tracks for the listener's positive history, and its
    version; ``([], "")`` when none is configured, the history is empty, or the call fails
    (logged and counted: the refresh goes on without it)."""
    if deps.user_encoder_factory is None:
        return [], ""
    history = [h.track_id for h in state.positives()]
    if not history:
        return [], ""
    m = deps.metrics
    if time.monotonic() < lazy.user_encoder_down_until:
        m.user_encoder_calls.labels(outcome="skipped").inc()
        return [], ""
    t0 = time.perf_counter()
    try:
        client = await lazy.user_encoder()
        items, version = await client.recommend(history, n=sequence_top_n(deps.settings.top_k))
    except Exception as exc:  # any failure: fall back, never drop the refresh
        lazy.user_encoder_down_until = time.monotonic() + _USER_ENCODER_BACKOFF_S
        m.user_encoder_calls.labels(outcome="error").inc()
        log.warning("user encoder failed (%s); training-free fusion for now", exc)
        return [], ""
    m.user_encoder_calls.labels(outcome="ok").inc()
    m.user_encoder_seconds.observe(time.perf_counter() - t0)
    return items, version
