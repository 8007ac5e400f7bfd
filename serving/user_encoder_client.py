"""Async client of the user (sequence) encoder served by Triton (``infra.triton_server``).

KServe v2 over HTTP, like ``serving.triton_client``: ``history`` BYTES ``[L]`` (track ids,
most recent last) -> ``track_ids`` BYTES ``[N]``, ``scores`` FP32 ``[N]``, ``version``
BYTES ``[1]``. The served model owns the vocabulary; the client only sends strings.

    async with UserEncoderClient(url=..., model_name="user_encoder") as c:
        items, version = await c.recommend(["t1", "t2"], n=20)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from types import TracebackType

import aiohttp
import numpy as np
import tritonclient.http.aio as aiohttpclient
from tritonclient.utils import InferenceServerException

log = logging.getLogger(__name__)

_POLL_S = 0.2


class UserEncoderError(RuntimeError):
    """Base of every error this client raises about the server."""


class UserEncoderUnavailable(UserEncoderError):
    """The server is not reachable or the model is not ready."""


class UserEncoderInferenceError(UserEncoderError):
    """The server answered with an error (e.g. no model trained yet) or a malformed result."""


class UserEncoderClient:
    """Async client of one user-encoder model; ``timeout_s`` bounds every request.

    ``ready_timeout_s`` bounds the readiness wait on enter (default ``timeout_s``).
    """

    def __init__(
        self,
        *,
        url: str,
        model_name: str = "user_encoder",
        timeout_s: float = 2.0,
        ready_timeout_s: float | None = None,
    ) -> None:
        self.url = url.removeprefix("http://")
        self.model_name = model_name
        self.timeout_s = timeout_s
        self.ready_timeout_s = timeout_s if ready_timeout_s is None else ready_timeout_s
        self._client: aiohttpclient.InferenceServerClient | None = None

    async def __aenter__(self) -> UserEncoderClient:
        self._client = aiohttpclient.InferenceServerClient(
            url=self.url, conn_timeout=self.timeout_s
        )
        try:
            await self._wait_ready()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session (idempotent)."""
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()

    @property
    def _c(self) -> aiohttpclient.InferenceServerClient:
        if self._client is None:
            raise RuntimeError("UserEncoderClient used outside its `async with` block")
        return self._client

    async def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        reason = "no answer yet"
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise UserEncoderUnavailable(
                    f"Triton at {self.url} not ready for {self.model_name!r} within "
                    f"{self.ready_timeout_s:.1f} s: {reason}"
                )
            try:
                async with asyncio.timeout(max(remaining, 0.01)):
                    if await self._c.is_model_ready(self.model_name):
                        return
                    reason = f"model {self.model_name!r} not ready"
            except (aiohttp.ClientError, OSError, TimeoutError, InferenceServerException) as exc:
                reason = f"{type(exc).__name__}: {exc}"
            await asyncio.sleep(min(_POLL_S, max(deadline - time.monotonic(), 0)))

    async def recommend(
        self, history: Sequence[str], n: int
    ) -> tuple[list[tuple[str, float]], str]:
        """Top-``n`` (track_id, score) after ``history`` (most recent last), and the version.

        An empty history is sent as one padding entry (the model answers with no tracks).
        """
        if n < 0:
            raise ValueError("n must be >= 0")
        items = [str(t) for t in history] or [""]
        data = np.array([t.encode() for t in items], dtype=np.object_)
        inp = aiohttpclient.InferInput("history", [len(items)], "BYTES")
        inp.set_data_from_numpy(data, binary_data=True)
        outputs = [
            aiohttpclient.InferRequestedOutput(name, binary_data=True)
            for name in ("track_ids", "scores", "version")
        ]
        try:
            async with asyncio.timeout(self.timeout_s):
                result = await self._c.infer(self.model_name, [inp], outputs=outputs)
        except InferenceServerException as exc:
            raise UserEncoderInferenceError(f"{self.model_name}: {exc}") from exc
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise UserEncoderUnavailable(f"{self.model_name} at {self.url}: {exc!r}") from exc
        ids = result.as_numpy("track_ids")
        scores = result.as_numpy("scores")
        version = result.as_numpy("version")
        if ids is None or scores is None or version is None or len(ids) != len(scores):
            raise UserEncoderInferenceError(f"{self.model_name}: malformed result")
        out = [
            (t.decode() if isinstance(t, bytes) else str(t), float(s))
            for t, s in zip(ids.reshape(-1).tolist(), scores.reshape(-1).tolist(), strict=True)
        ]
        v = version.reshape(-1)[0]
        return out[:n], v.decode() if isinstance(v, bytes) else str(v)
