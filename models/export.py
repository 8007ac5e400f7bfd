"""Export the audio encoder as a Triton model repository (TorchScript, libtorch backend).

Production Triton (``docker-compose.yml``) serves ``./run/model_repository`` mounted at
``/models``. This writes, for the MusiCNN card::

    <out_dir>/musicnn/config.pbtxt
    <out_dir>/musicnn/1/model.pt      # torch.jit.trace of models.musicnn.MusiCNN

The served tensors keep the names the client (``serving.triton_client``) and the embedded
pytriton binding (``infra.triton_server``) use: input ``mel`` FP32 ``[-1, 187, 96]``, outputs
``embedding`` ``[-1, 200]`` and ``tags`` ``[-1, 50]``. How the libtorch backend maps config
names onto the TorchScript ``forward`` (triton-inference-server/pytorch_backend, since
22.04/22.06, so in the 24.12 image):

* an input named like a ``forward()`` argument binds to that argument; the traced
  ``forward(self, mel: Tensor)`` keeps the Python argument name, so ``mel`` works as is;
* outputs that do not all follow ``<name>__<index>`` fall back to "strict config ordering":
  the i-th ``output`` entry of config.pbtxt is the i-th element of the returned tuple. So
  the order below (``embedding`` then ``tags``) *is* the binding; never reorder it.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from models.convert_musicnn import load_musicnn
from models.spec import ENCODER_INPUT, ENCODER_OUTPUTS, EncoderCard

log = logging.getLogger(__name__)

INPUT_NAME = ENCODER_INPUT
OUTPUT_NAMES = ENCODER_OUTPUTS  # order = position in forward()'s returned tuple
MODEL_FILENAME = "model.pt"  # the libtorch backend's default_model_filename
MODEL_VERSION = "1"
# Same hold-for-batching delay as the embedded server (infra.triton_server); on a GPU a
# forward pass is ~1 ms, so a larger delay would dominate latency at low load.
DEFAULT_QUEUE_DELAY_US = 2_000

InstanceKind = Literal["KIND_GPU", "KIND_CPU"]


@contextlib.contextmanager
def _torchscript_ok() -> Iterator[None]:
    """Silence torch's TorchScript deprecation warnings here: TorchScript is exactly what
    the libtorch backend of the 24.12 Triton image loads."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit.*", category=DeprecationWarning)
        yield


def trace_encoder(module: nn.Module, card: EncoderCard, *, example_batch: int = 2) -> nn.Module:
    """TorchScript trace of ``module`` (eval mode) for ``mel [B, F, M]`` with a free batch dim.

    The trace is checked against the eager module on a second batch size, so a shape that
    got baked in as a constant fails here rather than in Triton.
    """
    fe = card.frontend
    module = module.eval()
    gen = torch.Generator().manual_seed(0)
    example = torch.randn(example_batch, fe.patch_frames, fe.n_mels, generator=gen)
    check = torch.randn(example_batch + 3, fe.patch_frames, fe.n_mels, generator=gen)
    with torch.no_grad(), _torchscript_ok():
        traced = torch.jit.trace(
            module,
            example,
            check_inputs=[(example,), (check,)],
            check_tolerance=1e-5,
            _store_inputs=False,  # keep the archive to code + weights
        )
    schema = str(traced._c._get_method("forward").schema)
    if f"Tensor {INPUT_NAME})" not in schema:
        # The backend binds the config input (ENCODER_INPUT) by forward()'s argument name.
        raise ValueError(f"traced forward must take one tensor named {INPUT_NAME!r}: {schema}")
    return traced


def render_config(
    card: EncoderCard,
    *,
    n_tags: int,
    max_batch_size: int = 32,
    queue_delay_us: int = DEFAULT_QUEUE_DELAY_US,
    instance_kind: InstanceKind = "KIND_GPU",
    source: str = "",
) -> str:
    """config.pbtxt text for the libtorch backend (protobuf text format of ModelConfig)."""
    if max_batch_size < 1:
        raise ValueError("max_batch_size must be >= 1 (the client and batcher need batching)")
    fe = card.frontend
    emb_name, tags_name = OUTPUT_NAMES
    if instance_kind == "KIND_GPU":
        kind_note = (
            "CPU fallback: Triton will not load KIND_GPU where no GPU is visible; use "
            'KIND_CPU there (export with instance_kind="KIND_CPU" or edit this line).'
        )
    else:
        kind_note = "CPU instances; on a GPU server export with KIND_GPU instead."
    header = f"# {card.name} {card.version}, written by models/export.py"
    if source:
        header += f" from {source}"
    return f"""{header}; re-export, don't edit.
name: "{card.name}"
platform: "pytorch_libtorch"
max_batch_size: {max_batch_size}
input [
  {{
    # bound by name to the TorchScript forward(mel) argument
    name: "{INPUT_NAME}"
    data_type: TYPE_FP32
    dims: [ {fe.patch_frames}, {fe.n_mels} ]
  }}
]
# Names without "__<index>": the backend binds outputs by their order here, which is the
# order of forward()'s returned tuple (embedding, tags). Keep it.
output [
  {{
    name: "{emb_name}"
    data_type: TYPE_FP32
    dims: [ {card.embed_dim} ]
  }},
  {{
    name: "{tags_name}"
    data_type: TYPE_FP32
    dims: [ {n_tags} ]
  }}
]
dynamic_batching {{
  max_queue_delay_microseconds: {queue_delay_us}
}}
instance_group [
  {{
    count: 1
    # {kind_note}
    kind: {instance_kind}
  }}
]
"""


def export_triton_repository(
    weights_path: Path,
    out_dir: Path,
    *,
    max_batch_size: int = 32,
    queue_delay_us: int = DEFAULT_QUEUE_DELAY_US,
    instance_kind: InstanceKind = "KIND_GPU",
) -> Path:
    """Write ``out_dir/<card.name>/{config.pbtxt, 1/model.pt}``; return the model folder.

    ``out_dir`` is the model repository root (what Triton's ``--model-repository`` points
    at). Existing files of this model are overwritten; other models are left alone.
    """
    weights_path = Path(weights_path)
    module, card = load_musicnn(weights_path, device="cpu")
    traced = trace_encoder(module, card)
    fe = card.frontend
    with torch.no_grad():
        _, tags = module(torch.zeros(1, fe.patch_frames, fe.n_mels))
    n_tags = int(tags.shape[-1])

    model_dir = Path(out_dir) / card.name
    version_dir = model_dir / MODEL_VERSION
    version_dir.mkdir(parents=True, exist_ok=True)
    model_path = version_dir / MODEL_FILENAME
    # Write then rename, so a Triton polling the repository never sees half a file.
    tmp = model_path.with_suffix(".pt.tmp")
    with _torchscript_ok():
        torch.jit.save(traced, str(tmp))
    tmp.replace(model_path)
    config = render_config(
        card,
        n_tags=n_tags,
        max_batch_size=max_batch_size,
        queue_delay_us=queue_delay_us,
        instance_kind=instance_kind,
        source=weights_path.name,
    )
    config_path = model_dir / "config.pbtxt"
    tmp_cfg = config_path.with_suffix(".pbtxt.tmp")
    tmp_cfg.write_text(config)
    tmp_cfg.replace(config_path)
    log.info("wrote Triton model %s (%s) to %s", card.name, card.version, model_dir)
    return model_dir


def export_command(weights: Path, out: Path) -> None:
    """CLI body of ``resonate export-triton``: export and print where it went."""
    model_dir = export_triton_repository(weights, out)
    print(model_dir)
