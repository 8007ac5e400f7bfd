"""The Triton model repository export: TorchScript parity and a config the client can use.

No libtorch Triton runs here (pytriton ships only the python backend), so the checks are:
the TorchScript file reproduces the eager model, its forward() takes ``mel`` and returns
(embedding, tags) in the order config.pbtxt lists them, and config.pbtxt parses as
Triton's ModelConfig protobuf with the names, dims and batching the client relies on.
"""

from __future__ import annotations

import contextlib
import io
import zipfile
from pathlib import Path

import pytest
import torch
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from models.convert_musicnn import MUSICNN_CARD, load_musicnn
from models.export import export_command, render_config
from serving.triton_client import INPUT_NAME, OUTPUT_NAMES

FE = MUSICNN_CARD.frontend
# torch 2.13 deprecates TorchScript; it is still what Triton's libtorch backend loads.
pytestmark = pytest.mark.filterwarnings(
    r"ignore:`torch\.jit\.\w+` is deprecated:DeprecationWarning"
)


@pytest.fixture(scope="module")
def repo(weights_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model repository written through the CLI body (traced once per module)."""
    root = tmp_path_factory.mktemp("model_repository")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        export_command(weights_path, root)
    assert out.getvalue().strip() == str(root / "musicnn")
    return root


@pytest.fixture(scope="module")
def config_text(repo: Path) -> str:
    return (repo / "musicnn" / "config.pbtxt").read_text()


@pytest.fixture(scope="module")
def scripted(repo: Path) -> torch.jit.ScriptModule:
    return torch.jit.load(str(repo / "musicnn" / "1" / "model.pt"), map_location="cpu")


def test_layout(repo: Path) -> None:
    files = sorted(str(p.relative_to(repo)) for p in repo.rglob("*") if p.is_file())
    assert files == ["musicnn/1/model.pt", "musicnn/config.pbtxt"]


@pytest.mark.parametrize("batch", [1, 5])
def test_torchscript_matches_eager(
    scripted: torch.jit.ScriptModule, weights_path: Path, batch: int
) -> None:
    eager, _ = load_musicnn(weights_path)
    x = torch.randn(batch, FE.patch_frames, FE.n_mels, generator=torch.Generator().manual_seed(7))
    with torch.inference_mode():
        want_emb, want_tags = eager(x)
        got = scripted(x)
    assert isinstance(got, tuple) and len(got) == 2
    got_emb, got_tags = got
    assert got_emb.shape == (batch, MUSICNN_CARD.embed_dim)
    assert got_tags.shape == (batch, len(MUSICNN_CARD.tag_names))
    torch.testing.assert_close(got_emb, want_emb, atol=1e-5, rtol=0)
    torch.testing.assert_close(got_tags, want_tags, atol=1e-5, rtol=0)


def test_forward_signature_binds_config_names(scripted: torch.jit.ScriptModule) -> None:
    # The libtorch backend binds an input by forward()'s argument name, and outputs named
    # without "__<index>" by their order in config.pbtxt = the returned tuple's order.
    schema = str(scripted._c._get_method("forward").schema)
    assert f"Tensor {INPUT_NAME})" in schema, schema
    assert schema.endswith("-> ((Tensor, Tensor))"), schema


def test_no_baked_in_device(repo: Path) -> None:
    # Triton loads the file straight onto the GPU; a traced "cpu" constant would break that.
    with zipfile.ZipFile(repo / "musicnn" / "1" / "model.pt") as z:
        code = [z.read(n).decode() for n in z.namelist() if n.endswith(".py")]
    assert code and not any("cpu" in c or "device=" in c for c in code)


def test_config_text(config_text: str) -> None:
    assert 'name: "musicnn"' in config_text
    assert 'platform: "pytorch_libtorch"' in config_text
    assert "max_batch_size: 32" in config_text
    assert f'name: "{INPUT_NAME}"' in config_text
    assert f"dims: [ {FE.patch_frames}, {FE.n_mels} ]" in config_text
    emb_at = config_text.index(f'name: "{OUTPUT_NAMES[0]}"')
    tags_at = config_text.index(f'name: "{OUTPUT_NAMES[1]}"')
    assert emb_at < tags_at  # order is the binding
    assert "dims: [ 200 ]" in config_text and "dims: [ 50 ]" in config_text
    assert "dynamic_batching" in config_text and "kind: KIND_GPU" in config_text
    assert "TYPE_FP32" in config_text


def test_config_parses_as_triton_model_config(config_text: str) -> None:
    cfg = text_format.Parse(config_text, model_config_pb2.ModelConfig())
    assert (cfg.name, cfg.platform, cfg.max_batch_size) == ("musicnn", "pytorch_libtorch", 32)
    assert [(i.name, list(i.dims), i.data_type) for i in cfg.input] == [
        (INPUT_NAME, [FE.patch_frames, FE.n_mels], model_config_pb2.TYPE_FP32)
    ]
    assert [(o.name, list(o.dims), o.data_type) for o in cfg.output] == [
        (OUTPUT_NAMES[0], [MUSICNN_CARD.embed_dim], model_config_pb2.TYPE_FP32),
        (OUTPUT_NAMES[1], [len(MUSICNN_CARD.tag_names)], model_config_pb2.TYPE_FP32),
    ]
    assert cfg.HasField("dynamic_batching")
    assert cfg.dynamic_batching.max_queue_delay_microseconds > 0
    assert [g.kind for g in cfg.instance_group] == [model_config_pb2.ModelInstanceGroup.KIND_GPU]
    # The backend's NAMED_INDEX convention must not kick in by accident.
    assert not any("__" in t.name for t in [*cfg.input, *cfg.output])


def test_cpu_config_variant() -> None:
    text = render_config(MUSICNN_CARD, n_tags=50, max_batch_size=8, instance_kind="KIND_CPU")
    cfg = text_format.Parse(text, model_config_pb2.ModelConfig())
    assert cfg.max_batch_size == 8
    assert [g.kind for g in cfg.instance_group] == [model_config_pb2.ModelInstanceGroup.KIND_CPU]
    with pytest.raises(ValueError):
        render_config(MUSICNN_CARD, n_tags=50, max_batch_size=0)
