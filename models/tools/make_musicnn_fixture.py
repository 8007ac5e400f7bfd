"""Make tests/fixtures/musicnn_tf_reference.npz with the ORIGINAL TensorFlow MusiCNN.

Runs in a separate TF venv (never in the project venv)::

    TF_USE_LEGACY_KERAS=1 /work/tfenv/bin/python models/tools/make_musicnn_fixture.py \
        --audio-dir /work/shared/data/audio --out tests/fixtures/musicnn_tf_reference.npz

For each clip it computes musicnn's own librosa log-mel, but in float32: musicnn's
``batch_data`` casts the mel power to float16 first, which overflows to inf on loud music.
All patches go in one batch (musicnn's multi-batch path mislabels features, see below).
It then runs ``musicnn.extractor.extractor`` (MSD_musicnn, 3 s non-overlapping patches) and
stores the mean-over-patches penultimate (200) and taggram (50), plus the first patch's.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import sys
from pathlib import Path

import numpy as np

# Two clips per style; Metal_madness backs the "top tags include rock/metal" test.
CLIPS: tuple[str, ...] = (
    "singularity-music__A_New_Journey__0",  # electronic
    "singularity-music__Nebula__0",  # electronic
    "fretsonfire-songs-sectoid__Metal_madness__0",  # rock
    "fretsonfire-songs-sectoid__War_of_freedom__0",  # rock
    "asc-music__frontiers__0",  # soundtrack
    "asc-music__machine_wars__0",  # soundtrack
)


def batch_data_float32(
    audio_file: str, n_frames: int, overlap: int
) -> tuple[np.ndarray, np.ndarray]:
    """``musicnn.extractor.batch_data`` with the float16 cast removed (float32 throughout)."""
    import librosa
    from musicnn import configuration as config

    audio, sr = librosa.load(audio_file, sr=config.SR)
    audio_rep = librosa.feature.melspectrogram(
        y=audio, sr=sr, hop_length=config.FFT_HOP, n_fft=config.FFT_SIZE, n_mels=config.N_MELS
    ).T
    audio_rep = audio_rep.astype(np.float32)
    audio_rep = np.log10(np.float32(10000) * audio_rep + np.float32(1)).astype(np.float32)
    last_frame = audio_rep.shape[0] - n_frames + 1
    batch = np.stack(
        [audio_rep[t : t + n_frames, :] for t in range(0, last_frame, overlap)], axis=0
    )
    return batch, audio_rep


def main() -> None:
    """Run the TF reference on CLIPS and write the npz fixture."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--audio-dir", type=Path, default=Path("/work/shared/data/audio"))
    parser.add_argument("--out", type=Path, default=Path("tests/fixtures/musicnn_tf_reference.npz"))
    args = parser.parse_args()

    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import musicnn.extractor as extractor

    extractor.batch_data = batch_data_float32  # the float32 fix, applied to musicnn itself
    # musicnn's extractor has a second bug: for every batch after the first it appends the
    # FIRST batch's penultimate (``penultimate_`` instead of ``backend_``). With its default
    # BATCH_SIZE = 1 every patch's "penultimate" is patch 0's. One batch per clip avoids it.
    extractor.config.BATCH_SIZE = 10_000

    out: dict[str, list[np.ndarray]] = {
        k: [] for k in ("penultimate_mean", "tags_mean", "penultimate_first", "tags_first",
                        "n_patches", "logmel_first_patch_mean")
    }  # fmt: skip
    for clip in CLIPS:
        path = str(args.audio_dir / f"{clip}.ogg")
        taggram, labels, feats = extractor.extractor(
            path, model="MSD_musicnn", input_length=3, input_overlap=False, extract_features=True
        )
        pen = np.asarray(feats["penultimate"], dtype=np.float32)
        batch, _ = batch_data_float32(path, 187, 187)
        assert pen.shape == (batch.shape[0], 200) and taggram.shape == (batch.shape[0], 50)
        out["penultimate_mean"].append(pen.mean(axis=0))
        out["tags_mean"].append(taggram.mean(axis=0).astype(np.float32))
        out["penultimate_first"].append(pen[0])
        out["tags_first"].append(taggram[0].astype(np.float32))
        out["n_patches"].append(np.array(batch.shape[0], dtype=np.int32))
        # Lets a failing parity test tell front-end drift from model drift.
        out["logmel_first_patch_mean"].append(batch[0].mean(axis=0).astype(np.float32))
        top = np.argsort(-taggram.mean(axis=0))[:3]
        print(clip, batch.shape[0], "patches, top tags:", [labels[i] for i in top], file=sys.stderr)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out,
        clip_ids=np.array(CLIPS),
        tag_names=np.array(labels),
        versions=np.array(
            [
                f"{name}=={importlib.metadata.version(name)}"
                for name in ("tensorflow-cpu", "tf-keras", "librosa", "numpy", "musicnn")
            ]
        ),
        **{k: np.stack(v) for k, v in out.items()},
    )
    print("wrote", args.out, args.out.stat().st_size, "bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
