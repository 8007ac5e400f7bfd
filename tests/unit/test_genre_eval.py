"""The genre evaluation's parts on made-up clips (the real run is ``resonate eval-genre``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.audio_eval import Clip
from models.convert_musicnn import MSD_TAGS
from models.frontend import log_mel
from models.genre_eval import agreement, front_end_retrieval, hpss_log_mels, markdown
from models.spec import FrontEndSpec

SPEC = FrontEndSpec()
CLIPS = [
    Clip(clip_id=f"{t}_{k}", track_id=t, style=s, path=Path(f"{t}_{k}.ogg"))
    for t, s in [("a", "rock"), ("b", "rock"), ("c", "electronic"), ("d", "soundtrack")]
    for k in range(2)
]


def tags_of(**by_tag: float) -> np.ndarray:
    p = np.zeros(len(MSD_TAGS))
    for name, v in by_tag.items():
        p[MSD_TAGS.index(name)] = v
    return p


def test_plain_is_the_served_log_mel_and_hpss_splits_tone_from_clicks() -> None:
    sr = SPEC.sample_rate
    t = np.arange(2 * sr) / sr
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    clicks = np.zeros_like(t)
    clicks[:: sr // 4] = 1.0
    mels = hpss_log_mels((tone + clicks).astype(np.float32), SPEC)
    assert np.array_equal(mels["plain"], log_mel((tone + clicks).astype(np.float32), SPEC))
    assert {m.shape for m in mels.values()} == {mels["plain"].shape}
    band = int(np.argmax(mels["plain"].mean(axis=0)))  # the tone's mel band
    assert mels["hpss-harmonic"][:, band].mean() > mels["hpss-percussive"][:, band].mean()
    top = mels["plain"].shape[1] - 5  # far above the tone: clicks only
    assert mels["hpss-percussive"][:, top:].mean() > mels["hpss-harmonic"][:, top:].mean()


def test_agreement_counts_named_styles_and_metal_as_rock() -> None:
    tags = np.stack(
        [
            tags_of(rock=0.9),
            tags_of(metal=0.8),  # rock accepts metal
            tags_of(electronic=0.7),
            tags_of(jazz=0.6),  # wrong
            tags_of(electronic=0.9),
            tags_of(electronic=0.8),
            tags_of(ambient=0.5),  # soundtrack: in the confusion table only
            np.zeros(len(MSD_TAGS)),
        ]
    )
    got = agreement(CLIPS, tags, MSD_TAGS)
    assert got["confusion"]["rock"] == {"electronic": 1, "jazz": 1, "metal": 1, "rock": 1}
    assert got["confusion"]["soundtrack"] == {"(unknown)": 1, "ambient": 1}
    assert got["n_named"] == 6 and got["accuracy"]["mean"] == pytest.approx(4 / 6)
    assert got["per_style_recall"] == {"electronic": 1.0, "rock": 0.5}
    assert got["majority_baseline"] == {"style": "rock", "accuracy": pytest.approx(4 / 6)}
    assert got["mean_confidence"]["agree"] == 1.0  # one genre tag per clip here


def test_front_ends_are_compared_paired_with_plain() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(size=(4, 8))
    same = np.repeat(base, 2, axis=0)  # both clips of a track alike
    emb = {
        "plain": same + 0.01 * rng.normal(size=same.shape),
        "hpss-harmonic": same + 0.01 * rng.normal(size=same.shape),
        "hpss-percussive": rng.normal(size=same.shape),  # no signal
    }
    res = front_end_retrieval(CLIPS, emb)
    track = res["same-track"]
    assert track["front_ends"]["plain"]["HitRate@1"]["mean"] == 1.0
    assert set(track["front_ends"]) == {"plain", "hpss-harmonic", "hpss-percussive", "hpss-stacked"}
    assert track["paired"]["hpss-harmonic - plain"]["MRR"]["mean"] == 0.0
    assert track["paired"]["hpss-percussive - plain"]["MRR"]["mean"] < 0.0
    tags = {k: np.stack([tags_of(rock=0.5)] * len(CLIPS)) for k in emb}
    text = markdown(
        {"agreement": {k: agreement(CLIPS, t, MSD_TAGS) for k, t in tags.items()}, "retrieval": res}
    )
    assert "| hpss-stacked - plain (paired) |" in text and "| soundtrack |" in text
