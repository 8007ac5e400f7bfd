"""The production Triton repository's user encoder: layout, versions, configs that parse as
Triton's ModelConfig protobuf, and answers identical to the embedded ``UserModel``.

No tritonserver runs here, so the Python-backend model's core (``recommend``) is driven
with the exported TorchScript as its scorer (what the BLS call to ``user_encoder_net`` runs
on a GPU host), on CPU, and compared with PyTorch and with ``serving.user_model``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from models.export_user_triton import export_user_encoder
from models.recsys.export_user import export_artifact
from models.recsys.sasrec import SASRec, SASRecConfig
from models.triton_user_model import recommend
from serving.user_model import UserModel

VOCAB = [f"t{i:02d}" for i in range(1, 13)]
pytestmark = pytest.mark.filterwarnings(r"ignore:`torch\.jit\.\w+` is deprecated")


def _model(seed: int) -> SASRec:
    torch.manual_seed(seed)
    return SASRec(len(VOCAB), SASRecConfig(max_len=8)).eval()


def _config(path: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def test_repository_layout_configs_and_versions(tmp_path: Path) -> None:
    arts, repo = tmp_path / "arts", tmp_path / "repo"
    export_artifact(_model(0), VOCAB, arts, dataset="unit", version="sasrec-1")
    front, version = export_user_encoder(arts, repo, top_n=5)
    assert (front, version) == (repo / "user_encoder", 1)
    files = sorted(str(p.relative_to(repo)) for p in repo.rglob("*") if p.is_file())
    assert files == [
        "user_encoder/1/card.json",
        "user_encoder/1/model.py",
        "user_encoder/1/top_n.py",
        "user_encoder/1/vocab.json",
        "user_encoder/config.pbtxt",
        "user_encoder_net/1/model.pt",
        "user_encoder_net/config.pbtxt",
    ]
    net = _config(repo / "user_encoder_net" / "config.pbtxt")
    assert net.platform == "pytorch_libtorch" and net.max_batch_size == 32
    assert [(i.name, i.data_type, list(i.dims)) for i in net.input] == [
        ("seq", model_config_pb2.TYPE_INT64, [-1])
    ]
    assert [(o.name, list(o.dims)) for o in net.output] == [("scores", [-1])]
    assert net.dynamic_batching.max_queue_delay_microseconds > 0
    assert net.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    assert net.version_policy.latest.num_versions == 1
    py = _config(repo / "user_encoder" / "config.pbtxt")
    assert py.backend == "python" and py.max_batch_size == 0
    assert [i.name for i in py.input] == ["history"]
    assert [o.name for o in py.output] == ["track_ids", "scores", "version"]
    assert py.input[0].data_type == model_config_pb2.TYPE_STRING
    assert py.parameters["top_n"].string_value == "5"
    assert py.parameters["net_model"].string_value == "user_encoder_net"

    # Same artifact again: nothing new. A newer artifact: the next version, both models.
    assert export_user_encoder(arts, repo, top_n=5) == (front, 1)
    time.sleep(0.01)
    export_artifact(_model(1), VOCAB, arts, dataset="unit", version="sasrec-2")
    assert export_user_encoder(arts, repo, top_n=5) == (front, 2)
    assert json.loads((front / "2" / "card.json").read_text())["version"] == "sasrec-2"
    assert (repo / "user_encoder_net" / "2" / "model.pt").is_file()
    assert not list(repo.rglob(".tmp-*"))


def test_served_answers_match_pytorch_and_the_embedded_model(tmp_path: Path) -> None:
    arts, repo = tmp_path / "arts", tmp_path / "repo"
    model = _model(3)
    export_artifact(model, VOCAB, arts, dataset="unit", version="sasrec-1")
    export_user_encoder(arts, repo, top_n=5)
    # What the libtorch backend loads, run on CPU.
    net = torch.jit.load(str(repo / "user_encoder_net" / "1" / "model.pt"), map_location="cpu")
    vocab = json.loads((repo / "user_encoder" / "1" / "vocab.json").read_text())
    index = {t: j + 1 for j, t in enumerate(vocab)}

    def scores(seq: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            got = net(torch.from_numpy(seq))
            want = model.last_logits(torch.from_numpy(seq))  # eager PyTorch
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
        return got[0].numpy()

    embedded = UserModel(arts, top_n=5, poll_s=0.0)
    for history in (["t02"], ["", "t02", "unknown", "t03"], VOCAB[:10], ["t12"] * 9):
        ids, sc = recommend(history, index=index, vocab=vocab, length=8, top_n=5, score_fn=scores)
        want_ids, want_scores, _ = embedded.recommend(history)
        assert ids == want_ids and not set(ids) & set(history)
        np.testing.assert_allclose(sc, want_scores, atol=1e-5)
    assert (
        recommend(["nope"], index=index, vocab=vocab, length=8, top_n=5, score_fn=scores)[0] == []
    )


def test_the_exported_backend_imports_as_tritonserver_does(tmp_path: Path) -> None:
    """tritonserver's Python backend puts the model and version folders on sys.path and
    imports ``<version>.model``; the backend must find its top-N beside it, with neither
    this package nor torch (the stock image has numpy only)."""
    arts, repo = tmp_path / "arts", tmp_path / "repo"
    export_artifact(_model(0), VOCAB, arts, dataset="unit", version="sasrec-1")
    front, version = export_user_encoder(arts, repo, top_n=5)
    probe = (
        "import importlib, sys\n"
        f"sys.path += [{str(front / str(version))!r}, {str(front)!r}]\n"
        f"m = importlib.import_module('{version}.model')\n"
        "print(m.recommend.__module__, sorted({'torch', 'models'} & set(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", probe], capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == [f"{version}.top_n", "[]"], out.stderr
