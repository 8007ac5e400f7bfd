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
