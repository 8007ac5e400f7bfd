"""Async client of the audio encoder served by Triton (embedded pytriton or production).

Only the plain KServe v2 HTTP protocol (``tritonclient.http.aio``) is used, so the same
client talks to pytriton and to a production Triton serving the encoder as ONNX or
TorchScript, as long as the model keeps the tensor names ``mel`` -> ``embedding``, ``tags``.

The input shape is read from the model metadata on enter (not from our ``EncoderCard``)
so a mismatch between the front end and the deployed model fails loudly before any audio
is sent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.http as httpclient
import tritonclient.http.aio as aiohttpclient

from models.spec import ENCODER_INPUT, ENCODER_OUTPUTS
from serving.tls import split_triton_url, triton_sync_tls
from serving.triton_base import POLL_S, PROBE_ERRORS, TritonHTTPClient

log = logging.getLogger(__name__)

INPUT_NAME = ENCODER_INPUT
OUTPUT_NAMES = ENCODER_OUTPUTS


class TritonError(RuntimeError):
    """Base of every error this client raises about the server."""


class TritonUnavailable(TritonError):
    """The server is not reachable, not live, or the model is not ready."""


class TritonInferenceError(TritonError):
    """The server answered an inference request with an error (or a malformed result)."""


class AudioEncoderClient(TritonHTTPClient):
    """Async client of one encoder model: ``async with ... as c: emb, tags = await c.embed(x)``.

    ``timeout_s`` bounds the readiness wait on enter and every single HTTP request.
    ``max_batch`` should not exceed the model's ``max_batch_size``; it is lowered to it
    when the model config says so. At most ``max_in_flight`` requests of this client are at
    the server at once (two keep a 1-instance CPU model busy while the next one uploads).
    """

    unavailable_error = TritonUnavailable
    inference_error = TritonInferenceError

    def __init__(
        self,
        *,
        url: str,
        model_name: str,
        timeout_s: float = 30.0,
        max_batch: int = 32,
        max_in_flight: int = 2,
        ssl_cafile: Path | None = None,
        ssl_verify: bool = True,
    ) -> None:
        if max_batch < 1 or max_in_flight < 1:
            raise ValueError("max_batch and max_in_flight must be >= 1")
        super().__init__(
            url=url,
            model_name=model_name,
            timeout_s=timeout_s,
            ssl_cafile=ssl_cafile,
            ssl_verify=ssl_verify,
        )
        self.max_batch = max_batch
        # Requests beyond this wait here rather than in Triton's queue, so that timeout_s
        # bounds one request's service time: on 2 CPU cores a 32-patch MusiCNN batch takes
        # 2-4 s and ten queued chunks would otherwise hit the timeout while merely waiting.
        self._in_flight = asyncio.Semaphore(max_in_flight)
        self.input_shape: tuple[int, ...] | None = None  # per-item shape, batch dim excluded
        self.model_version: str = ""

    async def _on_ready(self) -> None:
        await self._read_metadata()

    async def _read_metadata(self) -> None:
        """Input shape and version from the metadata; max_batch capped by the model config."""
        try:
            async with asyncio.timeout(self.timeout_s):
                meta: dict[str, Any] = await self._c.get_model_metadata(self.model_name)
        except PROBE_ERRORS as exc:
            raise TritonUnavailable(f"cannot read metadata of {self.model_name!r}: {exc}") from exc
        config: dict[str, Any] = {}
        try:
            async with asyncio.timeout(self.timeout_s):
                config = await self._c.get_model_config(self.model_name)
        except PROBE_ERRORS as exc:
            # A locked-down production Triton may restrict the config endpoint; the
            # metadata alone still tells a batching model by its leading -1.
            log.warning("cannot read config of %s (%s); inferring batching", self.model_name, exc)
        inputs = {i["name"]: i for i in meta.get("inputs", [])}
        if INPUT_NAME not in inputs:
            raise TritonInferenceError(
                f"model {self.model_name!r} has no input {INPUT_NAME!r}: {list(inputs)}"
            )
        spec = inputs[INPUT_NAME]
        if spec.get("datatype") != "FP32":
            raise TritonInferenceError(f"input {INPUT_NAME!r} is {spec.get('datatype')}, not FP32")
        shape = [int(d) for d in spec["shape"]]
        if config:
            model_max_batch = int(config.get("max_batch_size", 0))
        else:
            model_max_batch = self.max_batch if shape and shape[0] == -1 else 0
        if model_max_batch > 0:
            # Batching model: metadata shape leads with -1 for the batch dimension.
            shape = shape[1:]
            if self.max_batch > model_max_batch:
                log.info(
                    "max_batch %d > model max_batch_size %d; using %d",
                    self.max_batch,
                    model_max_batch,
                    model_max_batch,
                )
                self.max_batch = model_max_batch
        self.input_shape = tuple(shape)
        versions = meta.get("versions") or [""]
        self.model_version = str(versions[-1])
        log.info(
            "Triton %s model %s v%s: input %s %s, max_batch %d",
            self.url,
            self.model_name,
            self.model_version,
            INPUT_NAME,
            self.input_shape,
            self.max_batch,
        )

    def _validate(self, patches: np.ndarray) -> np.ndarray:
        """Raise ValueError unless patches is [N, *input_shape]; return it as C-contiguous fp32."""
        if self.input_shape is None:
            raise RuntimeError("AudioEncoderClient used outside its `async with` block")
        if patches.ndim != 1 + len(self.input_shape):
            raise ValueError(
                f"patches must be [N, {', '.join(map(str, self.input_shape))}], "
                f"got shape {patches.shape}"
            )
        for got, want in zip(patches.shape[1:], self.input_shape, strict=True):
            if want >= 0 and got != want:  # -1 in metadata = variable dimension
                raise ValueError(
                    f"patches shape {patches.shape} does not match model input "
                    f"[N, {', '.join(map(str, self.input_shape))}]"
                )
        return np.ascontiguousarray(patches, dtype=np.float32)

    async def _infer_chunk(self, chunk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One inference request; errors mapped to our exceptions."""
        inp = aiohttpclient.InferInput(INPUT_NAME, list(chunk.shape), "FP32")
        inp.set_data_from_numpy(chunk, binary_data=True)
        outputs = [aiohttpclient.InferRequestedOutput(n, binary_data=True) for n in OUTPUT_NAMES]
        async with self._in_flight:
            result = await self._infer([inp], outputs)
        emb = result.as_numpy(OUTPUT_NAMES[0])
        tags = result.as_numpy(OUTPUT_NAMES[1])
        if emb is None or tags is None or len(emb) != len(chunk) or len(tags) != len(chunk):
            raise TritonInferenceError(
                f"{self.model_name}: malformed result for {len(chunk)} items"
            )
        return emb, tags

    async def embed(self, patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings [N, D] and tag probabilities [N, T] of mel patches [N, F, M].

        Chunks of at most ``max_batch`` go out concurrently (up to ``max_in_flight`` at a
        time, shared with other ``embed`` calls) and are reassembled in input order.
        """
        x = self._validate(patches)
        if len(x) == 0:
            raise ValueError("patches is empty")
        chunks = [x[i : i + self.max_batch] for i in range(0, len(x), self.max_batch)]
        results = await asyncio.gather(*(self._infer_chunk(c) for c in chunks))
        emb = np.concatenate([r[0] for r in results], axis=0)
        tags = np.concatenate([r[1] for r in results], axis=0)
        return emb, tags


def wait_model_ready(
    url: str,
    model_name: str,
    timeout_s: float,
    *,
    ssl_cafile: Path | None = None,
    ssl_verify: bool = True,
) -> None:
    """Block until Triton at ``url`` is live and ``model_name`` ready; TritonUnavailable if not.

    Synchronous, for launchers and the CLI.
    """
    deadline = time.monotonic() + timeout_s
    reason = "no answer yet"
    # Short per-probe timeouts so the loop re-checks the deadline often.
    probe_s = max(min(timeout_s, 2.0), 0.1)
    client = httpclient.InferenceServerClient(
        url=split_triton_url(url)[0],
        connection_timeout=probe_s,
        network_timeout=probe_s,
        **triton_sync_tls(url, cafile=ssl_cafile, verify=ssl_verify),
    )
    try:
        while time.monotonic() < deadline:
            try:
                if not client.is_server_live():
                    reason = "server not live"
                elif not client.is_model_ready(model_name):
                    reason = f"model {model_name!r} not ready"
                else:
                    return
            except Exception as exc:  # geventhttpclient raises assorted socket errors
                reason = f"{type(exc).__name__}: {exc}"
            time.sleep(min(POLL_S, max(deadline - time.monotonic(), 0)))
    finally:
        client.close()
    raise TritonUnavailable(
        f"Triton at {url} not ready for {model_name!r} within {timeout_s:.1f} s: {reason}"
    )
