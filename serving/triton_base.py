"""What every async KServe v2 client of ours shares: session, readiness wait, error mapping.

Subclasses (``serving.triton_client``, ``serving.user_encoder_client``) name their two
exception types; entering connects and waits until the model is ready (``ready_timeout_s``),
leaving closes the session, and :meth:`TritonHTTPClient._infer` bounds a request by
``timeout_s`` and maps tritonclient/aiohttp failures to those types.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

import aiohttp
import tritonclient.http.aio as aiohttpclient
from tritonclient.utils import InferenceServerException

from serving.tls import split_triton_url, tls_context

POLL_S = 0.2  # readiness poll interval
# The server could not be reached or did not answer in time.
TRANSPORT_ERRORS = (aiohttp.ClientError, OSError, TimeoutError)
# ... or answered a probe with an error (e.g. unknown model).
PROBE_ERRORS = (*TRANSPORT_ERRORS, InferenceServerException)


class TritonHTTPClient:
    """Async context manager around ``tritonclient.http.aio`` for one model.

    ``timeout_s`` bounds every request; ``ready_timeout_s`` (default ``timeout_s``) the
    readiness wait on enter. An ``https://`` ``url`` speaks TLS, verified against
    ``ssl_cafile`` (or the system CAs) unless ``ssl_verify`` is False.
    """

    unavailable_error: ClassVar[type[Exception]] = RuntimeError
    """Raised when the server is not reachable, not ready, or a request times out."""
    inference_error: ClassVar[type[Exception]] = RuntimeError
    """Raised when the server answers a request with an error."""
    probe_live: ClassVar[bool] = True
    """Whether the readiness wait asks ``is_server_live`` before ``is_model_ready``."""

    def __init__(
        self,
        *,
        url: str,
        model_name: str,
        timeout_s: float,
        ready_timeout_s: float | None = None,
        ssl_cafile: Path | None = None,
        ssl_verify: bool = True,
    ) -> None:
        # tritonclient wants host:port without a scheme and TLS as a flag.
        self.url, self.tls = split_triton_url(url)
        self.ssl_cafile = ssl_cafile
        self.ssl_verify = ssl_verify
        self.model_name = model_name
        self.timeout_s = timeout_s
        self.ready_timeout_s = timeout_s if ready_timeout_s is None else ready_timeout_s
        self._client: aiohttpclient.InferenceServerClient | None = None

    async def __aenter__(self) -> Self:
        self._client = aiohttpclient.InferenceServerClient(
            url=self.url,
            conn_timeout=self.timeout_s,
            ssl=self.tls,
            ssl_context=(
                tls_context(cafile=self.ssl_cafile, verify=self.ssl_verify) if self.tls else None
            ),
        )
        try:
            await self._wait_ready()
            await self._on_ready()
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

    async def _on_ready(self) -> None:
        """Hook run once the model is ready, before ``__aenter__`` returns."""

    @property
    def _c(self) -> aiohttpclient.InferenceServerClient:
        if self._client is None:
            raise RuntimeError(f"{type(self).__name__} used outside its `async with` block")
        return self._client

    async def ready(self) -> bool:
        """Whether the server is live and the model ready now (one bounded probe)."""
        try:
            async with asyncio.timeout(self.timeout_s):
                live = await self._c.is_server_live() if self.probe_live else True
                return bool(live and await self._c.is_model_ready(self.model_name))
        except PROBE_ERRORS:
            return False

    async def _wait_ready(self) -> None:
        """Poll (live +) model ready until ``ready_timeout_s``; unavailable with the last reason."""
        deadline = time.monotonic() + self.ready_timeout_s
        reason = "no answer yet"
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self.unavailable_error(
                    f"Triton at {self.url} not ready for {self.model_name!r} within "
                    f"{self.ready_timeout_s:.1f} s: {reason}"
                )
            try:
                # Each probe is bounded too: a black-holed address must not eat the budget.
                async with asyncio.timeout(max(remaining, 0.01)):
                    if self.probe_live and not await self._c.is_server_live():
                        reason = "server not live"
                    elif not await self._c.is_model_ready(self.model_name):
                        reason = f"model {self.model_name!r} not ready"
                    else:
                        return
            except PROBE_ERRORS as exc:
                reason = f"{type(exc).__name__}: {exc}"
            await asyncio.sleep(min(POLL_S, max(deadline - time.monotonic(), 0)))

    async def _infer(
        self,
        inputs: list[aiohttpclient.InferInput],
        outputs: list[aiohttpclient.InferRequestedOutput],
    ) -> aiohttpclient.InferResult:
        """One inference request within ``timeout_s``; errors mapped to our exceptions."""
        try:
            async with asyncio.timeout(self.timeout_s):
                return await self._c.infer(self.model_name, inputs, outputs=outputs)
        except InferenceServerException as exc:
            raise self.inference_error(f"{self.model_name}: {exc}") from exc
        except TRANSPORT_ERRORS as exc:
            raise self.unavailable_error(f"{self.model_name} at {self.url}: {exc!r}") from exc
