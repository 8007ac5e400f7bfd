"""The audio encoder through a real pytriton server in a child process.

Uses a small stand-in encoder defined here (same I/O as MusiCNN: mel [B, 187, 96] ->
embedding [B, 200], tags [B, 50]) so the test does not need converted weights; the server
child builds the same module through ``--factory tests.integration.test_triton:make_stand_in``.
A server that cannot start is a failure, never a skip: the embedded stack depends on it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from infra.procs import StartupError, free_port
from infra.triton_proc import TritonProcess
from models.spec import EncoderCard, FrontEndSpec
from serving.triton_client import (
    AudioEncoderClient,
    TritonUnavailable,
    wait_model_ready,
)

log = logging.getLogger(__name__)

MODEL = "standin_encoder"
FACTORY = "tests.integration.test_triton:make_stand_in"
MAX_BATCH = 8  # small so that splitting is exercised with small inputs
FE = FrontEndSpec()
EMBED_DIM = 200
N_TAGS = 50


class StandInEncoder(nn.Module):
    """Conv over time + linear heads; MusiCNN's input/output shapes, few weights."""

    def __init__(self, n_mels: int = FE.n_mels, embed_dim: int = EMBED_DIM, n_tags: int = N_TAGS):
        super().__init__()
        self.conv = nn.Conv1d(n_mels, 16, kernel_size=3, padding=1)
        self.embed = nn.Linear(16, embed_dim)
        self.tags = nn.Linear(embed_dim, n_tags)

    def forward(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.relu(self.conv(mel.transpose(1, 2))).mean(dim=-1)  # [B, 16]
        emb = self.embed(h)
        return emb, torch.sigmoid(self.tags(emb))


def make_stand_in() -> tuple[nn.Module, EncoderCard]:
    """Deterministic stand-in: the test and the server child build identical weights."""
    with torch.random.fork_rng():  # do not disturb the caller's global RNG
        torch.manual_seed(1234)
        module = StandInEncoder().eval()
    card = EncoderCard(
        name=MODEL,
        version="standin-1",
        frontend=FE,
        embed_dim=EMBED_DIM,
        tag_names=tuple(f"tag{i}" for i in range(N_TAGS)),
    )
    return module, card


def _patches(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, FE.patch_frames, FE.n_mels)).astype(np.float32)


def _reference(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    module, _ = make_stand_in()
    with torch.inference_mode():
        emb, tags = module(torch.from_numpy(x))
    return emb.numpy(), tags.numpy()


@pytest.fixture(scope="module")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonProcess]:
    log_path = tmp_path_factory.mktemp("triton") / "triton.log"
    proc = TritonProcess(
        factory=FACTORY,
        model_name=MODEL,
        host="127.0.0.1",
        http_port=free_port(),
        grpc_port=free_port(),
        metrics_port=free_port(),
        log_path=log_path,
        max_batch=MAX_BATCH,
        startup_timeout_s=180,
    )
    try:
        proc.start()
    except StartupError as exc:
        pytest.fail(f"Triton did not start: {exc}", pytrace=False)
    log.info("Triton startup took %.1f s", proc.startup_s or -1.0)
    try:
        yield proc
    finally:
        proc.stop()


def _client(triton: TritonProcess, **kw: float) -> AudioEncoderClient:
    return AudioEncoderClient(
        url=triton.url, model_name=MODEL, timeout_s=kw.get("timeout_s", 30.0), max_batch=MAX_BATCH
    )


def test_sync_wait_model_ready(triton: TritonProcess) -> None:
    wait_model_ready(triton.url, MODEL, timeout_s=5.0)


def test_outputs_match_pytorch(triton: TritonProcess) -> None:
    x = _patches(3)

    async def run() -> tuple[np.ndarray, np.ndarray, tuple[int, ...] | None]:
        async with _client(triton) as c:
            emb, tags = await c.embed(x)
            return emb, tags, c.input_shape

    emb, tags, shape = asyncio.run(run())
    assert shape == (FE.patch_frames, FE.n_mels)
    ref_emb, ref_tags = _reference(x)
    assert emb.shape == (3, EMBED_DIM) and tags.shape == (3, N_TAGS)
    assert emb.dtype == np.float32 and tags.dtype == np.float32
    np.testing.assert_allclose(emb, ref_emb, atol=1e-5)
    np.testing.assert_allclose(tags, ref_tags, atol=1e-5)


def test_large_batch_split_in_order(triton: TritonProcess) -> None:
    n = 3 * MAX_BATCH + 5  # four chunks, the last one partial
    x = _patches(n, seed=1)

    async def run() -> tuple[np.ndarray, np.ndarray, list[float]]:
        async with _client(triton) as c:
            emb, tags = await c.embed(x)
            # Per-batch latency of one full batch, sequentially, for the record.
            lat = []
            for _ in range(5):
                t0 = time.perf_counter()
                await c.embed(x[:MAX_BATCH])
                lat.append(time.perf_counter() - t0)
            return emb, tags, lat

    emb, tags, lat = asyncio.run(run())
    log.info(
        "batch of %d: median %.1f ms, min %.1f ms", MAX_BATCH,
        1e3 * float(np.median(lat)), 1e3 * min(lat),
    )  # fmt: skip
    ref_emb, ref_tags = _reference(x)
    assert emb.shape == (n, EMBED_DIM) and tags.shape == (n, N_TAGS)
    np.testing.assert_allclose(emb, ref_emb, atol=1e-5)
    np.testing.assert_allclose(tags, ref_tags, atol=1e-5)


def test_concurrent_embeds(triton: TritonProcess) -> None:
    inputs = [_patches(k + 1, seed=10 + k) for k in range(12)]

    async def run() -> list[tuple[np.ndarray, np.ndarray]]:
        async with _client(triton) as c:
            return await asyncio.gather(*(c.embed(x) for x in inputs))

    results = asyncio.run(run())
    assert len(results) == len(inputs)
    for x, (emb, tags) in zip(inputs, results, strict=True):
        ref_emb, ref_tags = _reference(x)
        np.testing.assert_allclose(emb, ref_emb, atol=1e-5)
        np.testing.assert_allclose(tags, ref_tags, atol=1e-5)


@pytest.mark.parametrize(
    "shape",
    [(2, FE.patch_frames + 1, FE.n_mels), (2, FE.patch_frames, 64), (FE.patch_frames, FE.n_mels)],
)
def test_wrong_shape_raises_value_error(triton: TritonProcess, shape: tuple[int, ...]) -> None:
    async def run() -> None:
        async with _client(triton) as c:
            await c.embed(np.zeros(shape, dtype=np.float32))

    with pytest.raises(ValueError):
        asyncio.run(run())


def test_nothing_listening_raises_unavailable() -> None:
    port = free_port()  # nobody listens here
    timeout_s = 1.5

    async def run() -> None:
        async with AudioEncoderClient(
            url=f"127.0.0.1:{port}", model_name=MODEL, timeout_s=timeout_s, max_batch=MAX_BATCH
        ) as c:
            await c.embed(_patches(1))

    t0 = time.monotonic()
    with pytest.raises(TritonUnavailable):
        asyncio.run(run())
    assert time.monotonic() - t0 < timeout_s + 1.0

    t0 = time.monotonic()
    with pytest.raises(TritonUnavailable):
        wait_model_ready(f"127.0.0.1:{port}", MODEL, timeout_s=timeout_s)
    assert time.monotonic() - t0 < timeout_s + 1.0


def test_unknown_model_raises_unavailable(triton: TritonProcess) -> None:
    async def run() -> None:
        async with AudioEncoderClient(url=triton.url, model_name="no_such_model", timeout_s=1.0):
            pass

    with pytest.raises(TritonUnavailable, match="no_such_model"):
        asyncio.run(run())


def test_metrics_port_serves_prometheus(triton: TritonProcess) -> None:
    with urllib.request.urlopen(triton.metrics_url, timeout=10) as resp:
        text = resp.read().decode()
    assert "nv_inference" in text
    assert f'model="{MODEL}"' in text


def test_factory_is_importable_as_the_child_does() -> None:
    # Guards FACTORY against renames: the child resolves it by this dotted path.
    from infra.triton_server import load_factory

    module, card = load_factory(FACTORY)()
    assert card.name == MODEL
    assert isinstance(module, nn.Module)
    assert Path(__file__).name == "test_triton.py"
