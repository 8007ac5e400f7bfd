"""Async client of the user (sequence) encoder served by Triton (``infra.triton_server``).

KServe v2 over HTTP, like ``serving.triton_client``: ``history`` BYTES ``[L]`` (track ids,
most recent last) -> ``track_ids`` BYTES ``[N]``, ``scores`` FP32 ``[N]``, ``version``
BYTES ``[1]``. The served model owns the vocabulary; the client only sends strings.

    async with UserEncoderClient(url=..., model_name="user_encoder") as c:
        items, version = await c.recommend(["t1", "t2"], n=20)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tritonclient.http.aio as aiohttpclient

from models.spec import USER_INPUT, USER_OUTPUTS
from serving.triton_base import TritonHTTPClient

log = logging.getLogger(__name__)


class UserEncoderError(RuntimeError):
    """Base of every error this client raises about the server."""


class UserEncoderUnavailable(UserEncoderError):
    """The server is not reachable or the model is not ready."""


class UserEncoderInferenceError(UserEncoderError):
    """The server answered with an error (e.g. no model trained yet) or a malformed result."""


class UserEncoderClient(TritonHTTPClient):
    """Async client of one user-encoder model; ``timeout_s`` bounds every request.

    ``ready_timeout_s`` bounds the readiness wait on enter (default ``timeout_s``).
    """

    unavailable_error = UserEncoderUnavailable
    inference_error = UserEncoderInferenceError
    probe_live = False  # model readiness alone; one probe per poll

    def __init__(
        self,
        *,
        url: str,
        model_name: str = "user_encoder",
        timeout_s: float = 2.0,
        ready_timeout_s: float | None = None,
        ssl_cafile: Path | None = None,
        ssl_verify: bool = True,
    ) -> None:
        super().__init__(
            url=url,
            model_name=model_name,
            timeout_s=timeout_s,
            ready_timeout_s=ready_timeout_s,
            ssl_cafile=ssl_cafile,
            ssl_verify=ssl_verify,
        )

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
        inp = aiohttpclient.InferInput(USER_INPUT, [len(items)], "BYTES")
        inp.set_data_from_numpy(data, binary_data=True)
        outputs = [
            aiohttpclient.InferRequestedOutput(name, binary_data=True) for name in USER_OUTPUTS
        ]
        result = await self._infer([inp], outputs)
        ids, scores, version = (result.as_numpy(name) for name in USER_OUTPUTS)
        if ids is None or scores is None or version is None or len(ids) != len(scores):
            raise UserEncoderInferenceError(f"{self.model_name}: malformed result")
        out = [
            (t.decode() if isinstance(t, bytes) else str(t), float(s))
            for t, s in zip(ids.reshape(-1).tolist(), scores.reshape(-1).tolist(), strict=True)
        ]
        v = version.reshape(-1)[0]
        return out[:n], v.decode() if isinstance(v, bytes) else str(v)
