"""Serve an audio encoder with pytriton (the embedded stand-in for a production Triton).

The served model follows ``models.spec.EncoderCard``: one input ``mel``
``[B, patch_frames, n_mels]`` float32 and two outputs ``embedding [B, embed_dim]`` and
``tags [B, n_tags]``, dynamically batched up to ``max_batch_size``. Clients only use the
plain KServe v2 protocol (``serving.triton_client``), so a production Triton serving the same
encoder as ONNX/TorchScript under the same name and tensor names is a drop-in replacement.

pytriton exposes the model as version ``1`` with platform ``python`` (backend ``python``);
the metadata endpoint ``GET /v2/models/<name>`` reports ``mel`` with shape
``[-1, patch_frames, n_mels]`` (``-1`` is the batch dimension).

With ``--user-model-dir DIR`` the same server also binds the user (sequence) encoder
``user_encoder`` (``serving.user_model``): input ``history`` BYTES ``[L]`` (track ids, most
recent last, empty = padding) -> ``track_ids`` BYTES ``[N]``, ``scores`` FP32 ``[N]`` (top-N,
the history excluded), ``version`` BYTES ``[1]``; no batching (one listener per request). It
picks up newer artifact versions in DIR by itself, without a restart.

Run as ``python -m infra.triton_server --weights PATH --http-port N --grpc-port N
--metrics-port N`` (or ``--factory module:function`` for a test stand-in). The process
that starts Triton must have ``LD_LIBRARY_PATH`` pointing at this interpreter's libdir,
see ``infra.triton_proc``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sysconfig
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from models.spec import ENCODER_INPUT, ENCODER_OUTPUTS, USER_INPUT, USER_OUTPUTS, EncoderCard

if TYPE_CHECKING:
    from serving.user_model import UserModel

log = logging.getLogger(__name__)

# Triton holds a request this long hoping to merge it with others into one batch. A few ms
# is cheap next to one CPU forward pass of MusiCNN (tens of ms) and helps under load.
DEFAULT_QUEUE_DELAY_US = 2_000

Factory = Callable[[], tuple[nn.Module, EncoderCard]]


def make_infer_func(module: nn.Module) -> Callable[..., dict[str, np.ndarray]]:
    """The batched inference callable pytriton calls with ``mel=[B, F, M]``.

    Kept separate from ``serve_encoder`` so it can be exercised without a server.
    """
    from pytriton.decorators import batch  # lazy: pytriton is heavy and server-only

    module.eval()

    @batch  # type: ignore[misc]  # untyped decorator from pytriton
    def infer(mel: np.ndarray) -> dict[str, np.ndarray]:  # pytriton binds by ENCODER_INPUT
        # inference_mode: no autograd bookkeeping; from_numpy avoids a copy of the batch.
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(mel, dtype=np.float32))
            emb, tags = module(x)
        return {
            ENCODER_OUTPUTS[0]: emb.detach().cpu().numpy().astype(np.float32, copy=False),
            ENCODER_OUTPUTS[1]: tags.detach().cpu().numpy().astype(np.float32, copy=False),
        }

    return infer  # type: ignore[no-any-return]


def make_user_infer_func(model: UserModel) -> Callable[..., list[dict[str, np.ndarray]]]:
    """The unbatched callable for ``user_encoder``: one ``history`` per request."""

    def infer(requests: list[Any]) -> list[dict[str, np.ndarray]]:
        out: list[dict[str, np.ndarray]] = []
        for req in requests:
            raw = np.asarray(req[USER_INPUT]).reshape(-1)
            history = [x.decode() if isinstance(x, bytes) else str(x) for x in raw.tolist()]
            ids, scores, version = model.recommend(history)
            ids_name, scores_name, version_name = USER_OUTPUTS
            out.append(
                {
                    # np.bytes_, not object: pytriton cannot validate an empty object array.
                    ids_name: np.array([t.encode() for t in ids], dtype=np.bytes_),
                    scores_name: np.asarray(scores, dtype=np.float32),
                    version_name: np.array([version.encode()], dtype=np.bytes_),
                }
            )
        return out

    return infer


def _bind_user_model(triton: Any, model: UserModel, name: str) -> None:
    from pytriton.model_config import ModelConfig, Tensor

    triton.bind(
        model_name=name,
        infer_func=make_user_infer_func(model),
        inputs=[Tensor(name=USER_INPUT, dtype=bytes, shape=(-1,))],
        outputs=[
            Tensor(name=USER_OUTPUTS[0], dtype=bytes, shape=(-1,)),
            Tensor(name=USER_OUTPUTS[1], dtype=np.float32, shape=(-1,)),
            Tensor(name=USER_OUTPUTS[2], dtype=bytes, shape=(1,)),
        ],
        config=ModelConfig(batching=False),
        strict=True,
    )


def _n_tags(module: nn.Module, card: EncoderCard) -> int:
    """Tag count from the card, or from one dry forward pass when the card names no tags."""
    if card.tag_names:
        return len(card.tag_names)
    fe = card.frontend
    with torch.inference_mode():
        _, tags = module(torch.zeros(1, fe.patch_frames, fe.n_mels))
    return int(tags.shape[-1])


def serve_encoder(
    module: nn.Module,
    card: EncoderCard,
    *,
    model_name: str,
    host: str,
    http_port: int,
    grpc_port: int,
    metrics_port: int,
    max_batch_size: int = 32,
    queue_delay_us: int = DEFAULT_QUEUE_DELAY_US,
    workspace: Path | None = None,
    user_model: UserModel | None = None,
    user_model_name: str = "user_encoder",
) -> None:
    """Bind ``module`` under ``model_name`` (``settings.triton_model``: the name the workers
    and readiness ask for; the card's name is only its default) and ``user_model`` if
    given; serve (blocks)."""
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig

    fe = card.frontend
    n_tags = _n_tags(module, card)
    config = TritonConfig(
        http_address=host,
        http_port=http_port,
        grpc_address=host,
        grpc_port=grpc_port,
        # metrics_address defaults to http_address; set it anyway so it never binds 0.0.0.0.
        allow_metrics=True,
        metrics_address=host,
        metrics_port=metrics_port,
        # CPU only here: GPU metrics would just log warnings every interval.
        allow_gpu_metrics=False,
        allow_cpu_metrics=True,
        exit_on_error=True,
        strict_readiness=True,
    )
    log.info(
        "serving %s (%s) on %s http=%d grpc=%d metrics=%d: mel [B,%d,%d] -> "
        "embedding [B,%d], tags [B,%d], max_batch=%d",
        model_name,
        card.version,
        host,
        http_port,
        grpc_port,
        metrics_port,
        fe.patch_frames,
        fe.n_mels,
        card.embed_dim,
        n_tags,
        max_batch_size,
    )
    with Triton(config=config, workspace=workspace) as triton:
        triton.bind(
            model_name=model_name,
            infer_func=make_infer_func(module),
            inputs=[
                Tensor(name=ENCODER_INPUT, dtype=np.float32, shape=(fe.patch_frames, fe.n_mels))
            ],
            outputs=[
                Tensor(name=ENCODER_OUTPUTS[0], dtype=np.float32, shape=(card.embed_dim,)),
                Tensor(name=ENCODER_OUTPUTS[1], dtype=np.float32, shape=(n_tags,)),
            ],
            config=ModelConfig(
                max_batch_size=max_batch_size,
                batcher=DynamicBatcher(max_queue_delay_microseconds=queue_delay_us),
            ),
            strict=True,
        )
        if user_model is not None:
            log.info("serving %s from %s", user_model_name, user_model.root)
            _bind_user_model(triton, user_model, user_model_name)
        triton.serve()


def load_factory(spec: str) -> Factory:
    """Resolve ``package.module:function`` to a zero-argument (module, card) factory."""
    mod_name, sep, func_name = spec.partition(":")
    if not sep or not mod_name or not func_name:
        raise ValueError(f"factory must look like 'package.module:function', got {spec!r}")
    func = getattr(importlib.import_module(mod_name), func_name)
    if not callable(func):
        raise TypeError(f"{spec} is not callable")
    return func  # type: ignore[no-any-return]


def load_encoder(*, weights: Path | None, factory: str | None) -> tuple[nn.Module, EncoderCard]:
    """The (module, card) to serve: converted MusiCNN weights, or a factory for tests."""
    if (weights is None) == (factory is None):
        raise ValueError("give exactly one of --weights or --factory")
    if factory is not None:
        return load_factory(factory)()
    # Lazy import: the converter pulls in code that a factory-served test does not need.
    from models.convert_musicnn import load_musicnn

    assert weights is not None
    module, card = load_musicnn(weights, device="cpu")
    return module, card


def _check_libpath() -> None:
    """Warn early when the python-backend stub will likely crash (see infra.triton_proc)."""
    libdir = str(sysconfig.get_config_var("LIBDIR") or "")
    if libdir and libdir not in os.environ.get("LD_LIBRARY_PATH", "").split(":"):
        log.warning(
            "LD_LIBRARY_PATH does not contain %s; the Triton python stub may load the wrong "
            "libpython and crash. Start this through infra.triton_proc.TritonProcess.",
            libdir,
        )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command line of ``python -m infra.triton_server``."""
    p = argparse.ArgumentParser(description="Serve the audio encoder with pytriton.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--weights", type=Path, help="converted MusiCNN weights (.pt)")
    src.add_argument("--factory", help="module:function returning (nn.Module, EncoderCard)")
    p.add_argument("--model-name", default=None, help="served name (default: the card's)")
    p.add_argument("--host", default="127.0.0.1", help="address all endpoints bind")
    p.add_argument("--http-port", type=int, required=True)
    p.add_argument("--grpc-port", type=int, required=True)
    p.add_argument("--metrics-port", type=int, required=True)
    p.add_argument("--max-batch", type=int, default=32, help="Triton max_batch_size")
    p.add_argument("--queue-delay-us", type=int, default=DEFAULT_QUEUE_DELAY_US)
    p.add_argument("--workspace", type=Path, default=None, help="pytriton workspace folder")
    p.add_argument(
        "--user-model-dir", type=Path, default=None, help="also serve the user encoder from here"
    )
    p.add_argument("--user-model-name", default="user_encoder")
    p.add_argument("--user-top-n", type=int, default=100, help="tracks per user-encoder answer")
    p.add_argument("--user-poll-s", type=float, default=2.0, help="new-version check interval")
    p.add_argument("--torch-threads", type=int, default=0, help="0 = torch default")
    p.add_argument("--log-level", default="INFO")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: load the encoder and serve it until SIGINT/SIGTERM."""
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    _check_libpath()
    # SIGTERM's default action would kill us without pytriton's cleanup (tritonserver, its
    # stubs, the workspace); as KeyboardInterrupt it takes the same path as Ctrl+C.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    if args.torch_threads > 0:
        torch.set_num_threads(args.torch_threads)
    module, card = load_encoder(weights=args.weights, factory=args.factory)
    user_model = None
    if args.user_model_dir is not None:
        from serving.user_model import UserModel

        user_model = UserModel(args.user_model_dir, top_n=args.user_top_n, poll_s=args.user_poll_s)
        user_model.refresh(force=True)  # load now if there is one; later versions on use
    serve_encoder(
        module,
        card,
        model_name=args.model_name or card.name,
        host=args.host,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        max_batch_size=args.max_batch,
        queue_delay_us=args.queue_delay_us,
        workspace=args.workspace,
        user_model=user_model,
        user_model_name=args.user_model_name,
    )


if __name__ == "__main__":
    main()
