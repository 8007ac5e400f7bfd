"""PyTorch MusiCNN vs the original TensorFlow MSD_musicnn on real clips.

The reference outputs in tests/fixtures/musicnn_tf_reference.npz were made by
models/tools/make_musicnn_fixture.py in a separate TF venv (see tests/fixtures/README.md).
Here the weights are converted from the musicnn wheel's checkpoint with the pure-Python
reader, so the test also covers models.tf_checkpoint and models.convert_musicnn.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models.convert_musicnn import MSD_TAGS, load_musicnn
from models.frontend import load_audio, log_mel, patches
from models.musicnn import MusiCNN
from models.spec import EncoderCard

FIXTURE = Path(__file__).parents[1] / "fixtures" / "musicnn_tf_reference.npz"
ATOL = 1e-4  # measured max abs diff is ~1e-5 (embeddings) and ~1e-6 (tag probabilities)


@pytest.fixture(scope="session")
def reference() -> dict[str, np.ndarray]:
    with np.load(FIXTURE) as ref:
        return {k: ref[k] for k in ref.files}


@pytest.fixture(scope="session")
def musicnn(weights_path: Path) -> tuple[MusiCNN, EncoderCard]:
    return load_musicnn(weights_path)


@pytest.fixture(scope="session")
def torch_outputs(
    musicnn: tuple[MusiCNN, EncoderCard], reference: dict[str, np.ndarray], data_dir: Path
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """clip_id -> (per-patch embeddings [n, 200], per-patch tag probabilities [n, 50])."""
    model, card = musicnn
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for clip in reference["clip_ids"]:
        path = data_dir / "audio" / f"{clip}.ogg"
        assert path.is_file(), f"audio clip missing: {path}"
        batch = patches(log_mel(load_audio(path, card.frontend), card.frontend), card.frontend)
        with torch.inference_mode():
            emb, tags = model(torch.from_numpy(batch))
        out[str(clip)] = (emb.numpy(), tags.numpy())
    return out


def test_card_and_shapes(musicnn: tuple[MusiCNN, EncoderCard]) -> None:
    model, card = musicnn
    assert card.tag_names == MSD_TAGS and len(card.tag_names) == 50
    assert card.embed_dim == 200
    assert not model.training
    with torch.inference_mode():
        emb, tags = model(torch.zeros(3, card.frontend.patch_frames, card.frontend.n_mels))
    assert emb.shape == (3, 200) and tags.shape == (3, 50)


def test_tag_names_match_reference(reference: dict[str, np.ndarray]) -> None:
    assert tuple(str(t) for t in reference["tag_names"]) == MSD_TAGS


def test_parity_with_tensorflow(
    reference: dict[str, np.ndarray], torch_outputs: dict[str, tuple[np.ndarray, np.ndarray]]
) -> None:
    for i, clip in enumerate(reference["clip_ids"]):
        emb, tags = torch_outputs[str(clip)]
        assert len(emb) == int(reference["n_patches"][i])
        np.testing.assert_allclose(emb[0], reference["penultimate_first"][i], rtol=0, atol=ATOL)
        np.testing.assert_allclose(tags[0], reference["tags_first"][i], rtol=0, atol=ATOL)
        np.testing.assert_allclose(
            emb.mean(axis=0), reference["penultimate_mean"][i], rtol=0, atol=ATOL
        )
        np.testing.assert_allclose(tags.mean(axis=0), reference["tags_mean"][i], rtol=0, atol=ATOL)


def test_metal_clip_is_tagged_rock_or_metal(
    torch_outputs: dict[str, tuple[np.ndarray, np.ndarray]],
) -> None:
    _, tags = torch_outputs["fretsonfire-songs-sectoid__Metal_madness__0"]
    top3 = {MSD_TAGS[i] for i in np.argsort(-tags.mean(axis=0))[:3]}
    assert top3 & {"rock", "metal", "heavy metal", "hard rock"}, top3


def test_missing_weights_message(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="resonate convert-musicnn"):
        load_musicnn(tmp_path / "nope.pt")


def test_tf_checkpoint_reader_crc_and_shapes() -> None:
    from models.convert_musicnn import locate_checkpoint
    from models.tf_checkpoint import read_checkpoint

    tensors = read_checkpoint(locate_checkpoint(), verify_crc=True)  # raises on crc mismatch
    assert len(tensors) == 150  # 75 model tensors + Adam slots and beta powers
    assert tensors["conv2d/kernel"].shape == (7, 38, 1, 204)
    assert tensors["dense/kernel"].shape == (1506, 200)
    assert tensors["dense/kernel"].dtype == np.float32
