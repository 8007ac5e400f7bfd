"""The user (sequence) encoder through a real pytriton server, next to the audio encoder.

The server child serves the stand-in audio encoder of ``test_triton`` plus ``user_encoder``
from an artifact folder; scores through Triton must equal eager PyTorch's, and a newer
version written to the folder must be served without a restart. A server that cannot start
is a failure, never a skip.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from infra.procs import StartupError, free_port
from infra.triton_proc import TritonProcess
from models.recsys.export_user import export_artifact
from models.recsys.sasrec import SASRec, SASRecConfig
from serving.user_encoder_client import UserEncoderClient, UserEncoderUnavailable
from tests.integration.test_triton import FACTORY, MODEL

VOCAB = [f"track-{i:03d}" for i in range(40)]
L = 10
TOP_N = 25


def _model(seed: int) -> SASRec:
    torch.manual_seed(seed)
    return SASRec(len(VOCAB), SASRecConfig(max_len=L)).eval()


def _expected(model: SASRec, history: list[str], n: int) -> tuple[list[str], np.ndarray]:
    idx = [VOCAB.index(t) + 1 for t in history]
    seq = torch.zeros(1, L, dtype=torch.int64)
    seq[0, L - len(idx[-L:]) :] = torch.tensor(idx[-L:])
    with torch.no_grad():
        scores = model.last_logits(seq)[0].numpy().astype(np.float64)
    scores[[i - 1 for i in idx]] = -np.inf
    order = np.argsort(-scores, kind="stable")[:n]
    return [VOCAB[j] for j in order], scores[order]


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("user-models")
    export_artifact(_model(1), VOCAB, root, dataset="unit", version="sasrec-v1")
    return root


@pytest.fixture(scope="module")
def triton(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[TritonProcess]:
    log_path = tmp_path_factory.mktemp("triton-user") / "triton.log"
    proc = TritonProcess(
        factory=FACTORY,
        model_name=MODEL,
        http_port=free_port(),
        grpc_port=free_port(),
        metrics_port=free_port(),
        log_path=log_path,
        user_model_dir=models_dir,
        user_top_n=TOP_N,
    )
    try:
        proc.start()
    except StartupError as exc:
        pytest.fail(f"Triton did not start: {exc}", pytrace=False)
    try:
        yield proc
    finally:
        proc.stop()


async def _recommend(
    url: str, history: list[str], n: int = 100
) -> tuple[list[tuple[str, float]], str]:
    async with UserEncoderClient(url=url, timeout_s=10.0) as c:
        return await c.recommend(history, n)


def test_scores_through_triton_equal_pytorch(triton: TritonProcess) -> None:
    history = ["track-003", "track-017", "", "track-005", "unknown-track"]
    items, version = asyncio.run(_recommend(triton.url, history))
    assert version == "sasrec-v1"
    ids, scores = _expected(_model(1), ["track-003", "track-017", "track-005"], TOP_N)
    assert [t for t, _ in items] == ids
    np.testing.assert_allclose([s for _, s in items], scores, atol=1e-5, rtol=0)
    short, _ = asyncio.run(_recommend(triton.url, history, n=3))
    assert [t for t, _ in short] == ids[:3]


def test_empty_or_unknown_history_gets_no_tracks(triton: TritonProcess) -> None:
    assert asyncio.run(_recommend(triton.url, [])) == ([], "sasrec-v1")
    assert asyncio.run(_recommend(triton.url, ["nope"])) == ([], "sasrec-v1")


def test_unknown_model_is_unavailable(triton: TritonProcess) -> None:
    async def go() -> None:
        async with UserEncoderClient(url=triton.url, model_name="nope", timeout_s=0.5):
            pass

    with pytest.raises(UserEncoderUnavailable):
        asyncio.run(go())


def test_newer_version_is_served_without_restart(triton: TritonProcess, models_dir: Path) -> None:
    history = ["track-010", "track-011"]
    export_artifact(_model(2), VOCAB, models_dir, dataset="unit", version="sasrec-v2")
    deadline = time.monotonic() + 30
    version = ""
    while time.monotonic() < deadline:
        items, version = asyncio.run(_recommend(triton.url, history))
        if version == "sasrec-v2":
            break
        time.sleep(0.5)
    assert version == "sasrec-v2"
    ids, scores = _expected(_model(2), history, TOP_N)
    assert [t for t, _ in items] == ids
    np.testing.assert_allclose([s for _, s in items], scores, atol=1e-5, rtol=0)
