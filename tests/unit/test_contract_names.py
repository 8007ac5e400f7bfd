"""One home per contract name: the served model name and the tensor names come from
settings and models/spec.py everywhere they are used (issue: the embedded Triton served the
encoder under the card's name while the workers asked for settings.triton_model)."""

from __future__ import annotations

from pathlib import Path

from infra.triton_proc import TritonProcess
from infra.triton_server import parse_args
from models.spec import ENCODER_INPUT, ENCODER_OUTPUTS, USER_INPUT, USER_OUTPUTS

ROOT = Path(__file__).resolve().parents[2]


def test_the_embedded_triton_serves_the_encoder_under_the_configured_name(
    tmp_path: Path,
) -> None:
    proc = TritonProcess(
        weights_path=tmp_path / "w.pt",
        model_name="encoder-b",
        http_port=1,
        grpc_port=2,
        metrics_port=3,
        log_path=tmp_path / "t.log",
    )
    cmd = proc.command()
    assert cmd[cmd.index("--model-name") + 1] == "encoder-b" == proc.model_names()[0]
    args = parse_args(cmd[3:])
    assert args.model_name == "encoder-b"


def test_tensor_names_have_one_home() -> None:
    """Every module that names a tensor imports it from models/spec.py; the Python-backend
    model, which runs inside tritonserver without this package, repeats the same names."""
    users = [
        "serving/triton_client.py",
        "serving/user_encoder_client.py",
        "infra/triton_server.py",
        "models/export.py",
    ]
    for rel in users:
        text = (ROOT / rel).read_text()
        assert "from models.spec import" in text, rel
        for name in (ENCODER_INPUT, *ENCODER_OUTPUTS, USER_INPUT, *USER_OUTPUTS):
            assert f'"{name}"' not in text, f"{rel} spells the tensor name {name!r} itself"
    backend = (ROOT / "models/triton_user_model.py").read_text()
    for name in (USER_INPUT, *USER_OUTPUTS):
        assert f'"{name}"' in backend


def test_the_worker_and_the_api_build_the_same_milvus_store() -> None:
    """The API used to build its store without the worker's consistency, HNSW and scalar
    index settings; both now go through TrackStore.from_settings."""
    from pydantic import SecretStr

    from models.convert_musicnn import MUSICNN_CARD
    from schemas.settings import Settings
    from serving.api.server import make_deps as api_deps
    from streams.metrics import Metrics
    from streams.runtime import make_deps as worker_deps

    s = Settings(
        kafka_bootstrap="127.0.0.1:1",
        milvus_uri="http://127.0.0.1:2",
        triton_url="127.0.0.1:3",
        milvus_index="HNSW",
        milvus_hnsw_m=24,
        milvus_consistency="Strong",
        milvus_scalar_index="STL_SORT",
        milvus_token=SecretStr("u:p"),
    )
    worker = worker_deps(s, MUSICNN_CARD, Metrics()).store_factory()
    api = api_deps(s, MUSICNN_CARD).store_factory()
    fields = ("uri", "collection", "dim", "index_type", "hnsw_m", "consistency", "scalar_index")
    assert {f: getattr(api, f) for f in fields} == {f: getattr(worker, f) for f in fields}
    assert api.consistency == "Strong" and api.scalar_index == "STL_SORT" and api.hnsw_m == 24
    assert api._token == worker._token == "u:p"
