"""Convert musicnn's pretrained MSD_musicnn TF checkpoint into ``MusiCNN`` PyTorch weights.

The ``musicnn`` wheel (ISC license) is only used as a file carrier: we locate its checkpoint
directory with importlib without importing the package (its submodules import TensorFlow)
and read the tensors with the pure-Python ``models.tf_checkpoint`` reader.

Run ``python -m models.convert_musicnn OUT.pt`` (or ``resonate convert-musicnn``).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import logging
from pathlib import Path

import numpy as np
import torch

from models.musicnn import MusiCNN, MusiCNNConfig
from models.spec import EncoderCard, FrontEndSpec
from models.tf_checkpoint import read_checkpoint

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "MSD_musicnn"
FORMAT_VERSION = 1  # bump if the saved dict layout changes

# musicnn.configuration.MSD_LABELS, copied so run time never needs the musicnn package.
MSD_TAGS: tuple[str, ...] = (
    "rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s",
    "alternative rock", "jazz", "beautiful", "metal", "chillout", "male vocalists",
    "classic rock", "soul", "indie rock", "Mellow", "electronica", "80s", "folk", "90s",
    "chill", "instrumental", "punk", "oldies", "blues", "hard rock", "ambient", "acoustic",
    "experimental", "female vocalist", "guitar", "Hip-Hop", "70s", "party", "country",
    "easy listening", "sexy", "catchy", "funk", "electro", "heavy metal", "Progressive rock",
    "60s", "rnb", "indie pop", "sad", "House", "happy",
)  # fmt: skip

# What the converted MSD_musicnn serves; importable without torch weights or musicnn.
MUSICNN_CARD = EncoderCard(
    name="musicnn",
    version="msd_musicnn-1",
    frontend=FrontEndSpec(),
    embed_dim=MusiCNNConfig().embed_dim,
    tag_names=MSD_TAGS,
)

# TF variable scope -> our module, in musicnn's layer-creation order (see musicnn/models.py).
_CONV2D = {"timbral.0": "conv2d", "timbral.1": "conv2d_1", "temporal.0": "conv2d_2",
           "temporal.1": "conv2d_3", "temporal.2": "conv2d_4"}  # fmt: skip
_CONV1D = {"midend.0": "conv2d_5", "midend.1": "conv2d_6", "midend.2": "conv2d_7"}
_BN = {"input_bn": "batch_normalization", "timbral_bn.0": "batch_normalization_1",
       "timbral_bn.1": "batch_normalization_2", "temporal_bn.0": "batch_normalization_3",
       "temporal_bn.1": "batch_normalization_4", "temporal_bn.2": "batch_normalization_5",
       "midend_bn.0": "batch_normalization_6", "midend_bn.1": "batch_normalization_7",
       "midend_bn.2": "batch_normalization_8", "pool_bn": "batch_normalization_9",
       "dense_bn": "batch_normalization_10"}  # fmt: skip
_DENSE = {"dense": "dense", "logits": "dense_1"}


def locate_checkpoint() -> Path:
    """Directory of the MSD_musicnn checkpoint inside the installed ``musicnn`` wheel."""
    # find_spec on a top-level name locates the package without executing it.
    spec = importlib.util.find_spec("musicnn")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "musicnn package not found; install it with `pip install --no-deps musicnn==0.1.0`"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / CHECKPOINT_NAME
    if not (path / ".index").is_file():
        raise FileNotFoundError(f"no {CHECKPOINT_NAME} checkpoint index under {path}")
    return path


def tf_to_state_dict(tf_vars: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Map musicnn's TF variables onto ``MusiCNN``'s state_dict (layouts transposed)."""
    sd: dict[str, torch.Tensor] = {}

    def put(name: str, array: np.ndarray) -> None:
        sd[name] = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))

    for ours, tf in _CONV2D.items():  # TF [kh, kw, in, out] -> torch [out, in, kh, kw]
        put(f"{ours}.weight", tf_vars[f"{tf}/kernel"].transpose(3, 2, 0, 1))
        put(f"{ours}.bias", tf_vars[f"{tf}/bias"])
    for ours, tf in _CONV1D.items():
        # TF conv2d over [time, channels-as-width, 1]: [k, C_in, 1, out] -> [out, C_in, k].
        put(f"{ours}.weight", tf_vars[f"{tf}/kernel"][:, :, 0, :].transpose(2, 1, 0))
        put(f"{ours}.bias", tf_vars[f"{tf}/bias"])
    for ours, tf in _BN.items():
        put(f"{ours}.weight", tf_vars[f"{tf}/gamma"])
        put(f"{ours}.bias", tf_vars[f"{tf}/beta"])
        put(f"{ours}.running_mean", tf_vars[f"{tf}/moving_mean"])
        put(f"{ours}.running_var", tf_vars[f"{tf}/moving_variance"])
        sd[f"{ours}.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    for ours, tf in _DENSE.items():  # TF [in, out] -> torch [out, in]
        put(f"{ours}.weight", tf_vars[f"{tf}/kernel"].T)
        put(f"{ours}.bias", tf_vars[f"{tf}/bias"])
    return sd


def convert(out_path: Path, checkpoint_dir: Path | None = None) -> Path:
    """Read the TF checkpoint, check it fits ``MusiCNN``, and save weights + config."""
    ckpt = checkpoint_dir or locate_checkpoint()
    tf_vars = read_checkpoint(ckpt)
    config = MusiCNNConfig()
    model = MusiCNN(config)
    # strict=True: every parameter and buffer must be covered, with matching shapes.
    state_dict = tf_to_state_dict(tf_vars)
    model.load_state_dict(state_dict, strict=True)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format_version": FORMAT_VERSION,
        "source": f"musicnn==0.1.0/{CHECKPOINT_NAME}",
        "config": dataclasses.asdict(config),
        "state_dict": state_dict,
    }
    torch.save(payload, out_path)
    log.info("wrote %s (%d tensors) from %s", out_path, len(state_dict), ckpt)
    return out_path


def load_musicnn(weights_path: Path, *, device: str = "cpu") -> tuple[MusiCNN, EncoderCard]:
    """Load converted weights; return the eval-mode model and its encoder card."""
    weights_path = Path(weights_path)
    if not weights_path.is_file():
        raise FileNotFoundError(
            f"MusiCNN weights not found at {weights_path}; "
            "run `resonate convert-musicnn` to create them"
        )
    payload = torch.load(weights_path, map_location=device, weights_only=True)
    if payload.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{weights_path}: unsupported weights format, re-run the conversion")
    cfg_dict = dict(payload["config"])
    # Tuples come back as lists after a round trip through some serialisers; be lenient.
    for key, value in cfg_dict.items():
        if isinstance(value, list):
            cfg_dict[key] = tuple(value)
    config = MusiCNNConfig(**cfg_dict)
    model = MusiCNN(config)
    model.load_state_dict(payload["state_dict"], strict=True)
    model.to(device).eval()
    if config.embed_dim != MUSICNN_CARD.embed_dim or config.n_tags != len(MSD_TAGS):
        raise ValueError(f"{weights_path}: config does not match the MSD_musicnn card")
    return model, MUSICNN_CARD


def main(argv: list[str] | None = None) -> None:
    """CLI: ``python -m models.convert_musicnn OUT.pt``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("out", type=Path, help="where to write the .pt weights")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    convert(args.out)


if __name__ == "__main__":
    main()
