"""Export the user (sequence) encoder into the production Triton model repository.

Two models per exported version ``N`` (Triton's integer versions, 1, 2, ...), written next
to ``musicnn`` by ``resonate export-triton --user-model-dir DIR``::

    <repo>/user_encoder_net/config.pbtxt    # libtorch: seq INT64 [-1] -> scores FP32 [-1]
    <repo>/user_encoder_net/<N>/model.pt    # the artifact's TorchScript, as trained
    <repo>/user_encoder/config.pbtxt        # python backend (numpy only) + BLS to the net
    <repo>/user_encoder/<N>/model.py        # models/triton_user_model.py
    <repo>/user_encoder/<N>/top_n.py        # models/top_n.py, which model.py imports
    <repo>/user_encoder/<N>/{vocab,card}.json

Clients see exactly the embedded ``user_encoder`` (``history`` BYTES -> ``track_ids``,
``scores``, ``version``). Dims are variable (``-1``) so versions with other vocabularies
share one config. Versions are exported net first, then the Python model, each by an atomic
rename, so a polling Triton never loads half a version or a Python model without its net.

Hot reload: with ``tritonserver --model-control-mode=poll --repository-poll-secs=N`` Triton
loads a new version folder by itself and unloads the old one (``version_policy: latest 1``);
with ``--model-control-mode=explicit``, ``POST /v2/repository/models/user_encoder_net/load``
then ``.../user_encoder/load`` does the same on demand. Re-exporting the same artifact is a
no-op.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from models.export import DEFAULT_QUEUE_DELAY_US, InstanceKind
from models.recsys.export_user import CARD_FILE, MODEL_FILE, VOCAB_FILE, latest_artifact

log = logging.getLogger(__name__)

PYTHON_MODEL = Path(__file__).with_name("triton_user_model.py")
# The top-N selection the embedded model shares; the backend imports it from beside itself.
TOP_N = Path(__file__).with_name("top_n.py")


def _versions(model_dir: Path) -> list[int]:
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def render_net_config(
    name: str,
    *,
    max_batch_size: int,
    queue_delay_us: int,
    instance_kind: InstanceKind,
) -> str:
    """config.pbtxt of the libtorch scoring network (input bound by forward(seq)'s name)."""
    return f"""# {name}: the sequence model's TorchScript, written by models/export_user_triton.py.
name: "{name}"
platform: "pytorch_libtorch"
max_batch_size: {max_batch_size}
input [
  {{
    # bound by name to the TorchScript forward(seq) argument; left-padded, 0 = padding
    name: "seq"
    data_type: TYPE_INT64
    dims: [ -1 ]
  }}
]
output [
  {{
    # column j = vocab[j] of the same version of user_encoder
    name: "scores"
    data_type: TYPE_FP32
    dims: [ -1 ]
  }}
]
version_policy: {{ latest {{ num_versions: 1 }} }}
dynamic_batching {{
  max_queue_delay_microseconds: {queue_delay_us}
}}
instance_group [
  {{
    count: 1
    kind: {instance_kind}
  }}
]
"""


def render_python_config(name: str, *, net: str, top_n: int, instances: int = 2) -> str:
    """config.pbtxt of the Python-backend front (strings in and out, BLS to ``net``)."""
    return f"""# {name}: track ids in, top-N track ids out; written by models/export_user_triton.py.
name: "{name}"
backend: "python"
max_batch_size: 0
input [
  {{
    name: "history"
    data_type: TYPE_STRING
    dims: [ -1 ]
  }}
]
output [
  {{
    name: "track_ids"
    data_type: TYPE_STRING
    dims: [ -1 ]
  }},
  {{
    name: "scores"
    data_type: TYPE_FP32
    dims: [ -1 ]
  }},
  {{
    name: "version"
    data_type: TYPE_STRING
    dims: [ 1 ]
  }}
]
version_policy: {{ latest {{ num_versions: 1 }} }}
parameters: {{ key: "top_n" value: {{ string_value: "{top_n}" }} }}
parameters: {{ key: "net_model" value: {{ string_value: "{net}" }} }}
instance_group [
  {{
    # string handling on the CPU; the scores run on the GPU in {net}
    count: {instances}
    kind: KIND_CPU
  }}
]
"""


def _publish(tmp: Path, final: Path) -> None:
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)


def export_user_encoder(
    artifact_root: Path,
    repo: Path,
    *,
    name: str = "user_encoder",
    top_n: int = 100,
    max_batch_size: int = 32,
    queue_delay_us: int = DEFAULT_QUEUE_DELAY_US,
    instance_kind: InstanceKind = "KIND_GPU",
) -> tuple[Path, int]:
    """Export the newest artifact under ``artifact_root``; return (front model dir, version).

    Re-exporting the artifact already served as the newest version writes nothing.
    """
    art = latest_artifact(Path(artifact_root))
    if art is None:
        raise FileNotFoundError(f"no complete user-model artifact under {artifact_root}")
    card = json.loads((art / CARD_FILE).read_text())
    net = f"{name}_net"
    front_dir, net_dir = Path(repo) / name, Path(repo) / net
    versions = _versions(front_dir)
    if versions:
        served = json.loads((front_dir / str(versions[-1]) / CARD_FILE).read_text())
        if served.get("version") == card["version"]:
            log.info("%s %s already exported as version %d", name, card["version"], versions[-1])
            return front_dir, versions[-1]
    number = max([0, *versions, *_versions(net_dir)]) + 1
    for d in (front_dir, net_dir):
        d.mkdir(parents=True, exist_ok=True)
    # The configs first (they do not change between versions), then the net, then the front.
    (net_dir / "config.pbtxt").write_text(
        render_net_config(
            net,
            max_batch_size=max_batch_size,
            queue_delay_us=queue_delay_us,
            instance_kind=instance_kind,
        )
    )
    (front_dir / "config.pbtxt").write_text(render_python_config(name, net=net, top_n=top_n))
    tmp = net_dir / f".tmp-{number}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    shutil.copy2(art / MODEL_FILE, tmp / MODEL_FILE)
    _publish(tmp, net_dir / str(number))
    tmp = front_dir / f".tmp-{number}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    shutil.copy2(PYTHON_MODEL, tmp / "model.py")
    shutil.copy2(TOP_N, tmp / TOP_N.name)
    shutil.copy2(art / VOCAB_FILE, tmp / VOCAB_FILE)
    shutil.copy2(art / CARD_FILE, tmp / CARD_FILE)
    _publish(tmp, front_dir / str(number))
    log.info("exported %s %s as Triton version %d into %s", name, card["version"], number, repo)
    return front_dir, number
