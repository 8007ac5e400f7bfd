"""Genre from audio, measured on the real clips (``resonate eval-genre``).

Two questions, on the 40 clips of ``<data_dir>/audio`` (``manifest.csv``, see
``models.audio_eval``), each clip pooled as ingestion pools a track (mean over the 3 s
patches of the first 30 s):

* **agreement** -- how often the genre ``models.genre`` predicts from MusiCNN's tags names
  the clip's ``style``. The style is a weak label: one per Debian package (every clip of a
  package has the same style), three styles, one of which ("soundtrack") no MSD genre tag
  names. A style *agrees* with a predicted genre when they are the same word, and "rock"
  also accepts "metal" (a rock genre the MSD tags keep apart); fixed before the run. The
  accuracy is over the clips of styles the table can name, beside the majority-style
  baseline; the confusion table covers every clip.
* **HPSS front end** -- harmonic-percussive separation before the log-mel, as an encoder
  front-end variant: the STFT (the front end's own window and hop) is split by median
  filtering with soft masks (``librosa.decompose.hpss``, librosa's default kernels), and
  the log-mel is taken of the harmonic part ("hpss-harmonic"), of the percussive part
  ("hpss-percussive"), or of each with the two track vectors concatenated
  ("hpss-stacked", both unit length, then the whole). Same-track and same-style retrieval
  of ``models.audio_eval``, compared paired, query by query, with the plain front end (what
  is served).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import librosa
import numpy as np
import torch

from models.audio_eval import (
    MAX_SECONDS,
    Clip,
    cosine_ranker,
    per_query,
    read_manifest,
    summarise,
    unit_rows,
)
from models.convert_musicnn import load_musicnn
from models.frontend import load_audio, log_mel, patches
from models.genre import GENRES, predict_genre
from models.spec import FrontEndSpec

log = logging.getLogger(__name__)

# The clips' style -> the predicted genres that agree with it (see the module docstring).
AGREES: dict[str, frozenset[str]] = {
    "electronic": frozenset({"electronic"}),
    "rock": frozenset({"rock", "metal"}),
}
FRONT_ENDS = ("plain", "hpss-harmonic", "hpss-percussive")
TASKS = {"same-track": ("HitRate@1", "HitRate@5", "MRR"), "same-style": ("Precision@5", "mAP")}


def hpss_log_mels(y: np.ndarray, spec: FrontEndSpec) -> dict[str, np.ndarray]:
    """The log-mel [frames, n_mels] of each front end of :data:`FRONT_ENDS`.

    "plain" is ``models.frontend.log_mel`` exactly (same STFT, mel filters and compression),
    so the variants differ from it in the separation only.
    """
    stft = librosa.stft(
        np.asarray(y, dtype=np.float32), n_fft=spec.n_fft, hop_length=spec.hop_length
    )
    harmonic, percussive = librosa.decompose.hpss(stft)
    out = {"plain": log_mel(y, spec)}
    for name, part in (("hpss-harmonic", harmonic), ("hpss-percussive", percussive)):
        power = librosa.feature.melspectrogram(
            S=np.abs(part) ** 2, sr=spec.sample_rate, n_fft=spec.n_fft, n_mels=spec.n_mels
        ).T.astype(np.float32)
        out[name] = np.log10(np.float32(spec.log_scale) * power + np.float32(1.0))
    return out


Pooled = dict[str, np.ndarray]  # front end -> [n_clips, d], one pooled row per clip


def embed_clips(clips: Sequence[Clip], weights: Path) -> tuple[Pooled, Pooled, tuple[str, ...]]:
    """Per front end, the clips' pooled embeddings and pooled tag probabilities
    ([n_clips, 200] and [n_clips, 50], not normalised), and the tag names."""
    torch.set_num_threads(1)  # another run may share the cores: keep to one
    model, card = load_musicnn(weights)
    spec: FrontEndSpec = card.frontend
    emb: dict[str, list[np.ndarray]] = {f: [] for f in FRONT_ENDS}
    tags: dict[str, list[np.ndarray]] = {f: [] for f in FRONT_ENDS}
    for c in clips:
        y = load_audio(c.path, spec, max_seconds=MAX_SECONDS)
        for name, mel in hpss_log_mels(y, spec).items():
            with torch.no_grad():
                e, t = model(torch.from_numpy(patches(mel, spec)))
            emb[name].append(e.numpy().mean(axis=0))
            tags[name].append(t.numpy().mean(axis=0))
        log.info("embedded %s", c.clip_id)
    return (
        {k: np.asarray(v) for k, v in emb.items()},
        {k: np.asarray(v) for k, v in tags.items()},
        card.tag_names,
    )


def agreement(clips: Sequence[Clip], tags: np.ndarray, tag_names: Sequence[str]) -> dict[str, Any]:
    """The predicted genre of each clip against its style: confusion table, accuracy over
    the styles the genres can name, the majority-style baseline, confidence by outcome."""
    preds = [predict_genre(t, tag_names) for t in tags]
    confusion: dict[str, dict[str, int]] = {}
    for c, p in zip(clips, preds, strict=True):
        row = confusion.setdefault(c.style, {})
        row[p.label or "(unknown)"] = row.get(p.label or "(unknown)", 0) + 1
    named = [(c, p) for c, p in zip(clips, preds, strict=True) if c.style in AGREES]
    right = [p.label in AGREES[c.style] for c, p in named]
    styles = [c.style for c, _ in named]
    majority = max(set(styles), key=styles.count)
    conf = {
        "agree": [p.confidence for (_, p), ok in zip(named, right, strict=True) if ok],
        "disagree": [p.confidence for (_, p), ok in zip(named, right, strict=True) if not ok],
    }
    return {
        "confusion": {s: dict(sorted(r.items())) for s, r in sorted(confusion.items())},
        "n_named": len(named),
        "accuracy": _mean_ci([float(ok) for ok in right]),
        "per_style_recall": {
            s: float(np.mean([ok for (c, _), ok in zip(named, right, strict=True) if c.style == s]))
            for s in sorted(AGREES)
        },
        "majority_baseline": {"style": majority, "accuracy": styles.count(majority) / len(styles)},
        "mean_confidence": {k: float(np.mean(v)) if v else None for k, v in conf.items()},
        "per_clip": [
            {"clip_id": c.clip_id, "style": c.style, "genre": p.label, "confidence": p.confidence}
            for c, p in zip(clips, preds, strict=True)
        ],
    }


def _mean_ci(values: Sequence[float]) -> dict[str, float]:
    """Mean and 95% CI (normal approximation, as in ``models.audio_eval``)."""
    v = np.asarray(values, dtype=float)
    ci = 1.96 * v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else float("nan")
    return {"mean": float(v.mean()), "ci95": float(ci), "n": len(v)}


def _vectors(emb: Pooled) -> Pooled:
    """Unit track vectors per front end, plus the stacked harmonic + percussive one."""
    vecs = {name: unit_rows(e) for name, e in emb.items()}
    both = np.concatenate([vecs["hpss-harmonic"], vecs["hpss-percussive"]], axis=1)
    vecs["hpss-stacked"] = unit_rows(both)
    return vecs


def _minus(a: dict[str, list[float]], b: dict[str, list[float]]) -> dict[str, list[float]]:
    """Per metric, ``a - b`` query by query (both over the same queries, in order)."""
    return {k: list(np.subtract(a[k], b[k])) for k in b}


def front_end_retrieval(clips: Sequence[Clip], emb: Pooled) -> dict[str, dict[str, Any]]:
    """Per task: every front end's retrieval, and each variant minus plain, paired."""
    out: dict[str, dict[str, Any]] = {}
    vecs = _vectors(emb)
    for task in TASKS:
        per = {name: per_query(clips, cosine_ranker(v), task) for name, v in vecs.items()}
        out[task] = {
            "front_ends": {name: summarise(p) for name, p in per.items()},
            "paired": {
                f"{n} - plain": summarise(_minus(per[n], per["plain"])) for n in per if n != "plain"
            },
        }
    return out


def evaluate_genre(audio_dir: Path, weights: Path) -> dict[str, Any]:
    """Agreement of the predicted genre with the styles, and the HPSS front ends; JSON-able."""
    clips = read_manifest(audio_dir)
    emb, tags, names = embed_clips(clips, weights)
    styles: dict[str, int] = {}
    for c in clips:
        styles[c.style] = styles.get(c.style, 0) + 1
    return {
        "audio_dir": str(audio_dir),
        "n_clips": len(clips),
        "n_tracks": len({c.track_id for c in clips}),
        "styles": styles,
        "genres": {g: list(t) for g, t in GENRES.items()},
        "agrees": {s: sorted(g) for s, g in AGREES.items()},
        "agreement": {name: agreement(clips, t, names) for name, t in tags.items()},
        "retrieval": front_end_retrieval(clips, emb),
    }


def _cells(m: dict[str, Any], cols: Sequence[str], sign: str = "") -> str:
    return " | ".join(f"{m[c]['mean']:{sign}.3f} ± {m[c]['ci95']:.3f}" for c in cols)


def markdown(result: dict[str, Any]) -> str:
    """The figures as Markdown (for docs/results.md)."""
    plain = result["agreement"]["plain"]
    genres = sorted({g for r in plain["confusion"].values() for g in r})
    lines = [
        "**style (rows) x predicted genre (columns), plain front end**",
        "",
        "| style | " + " | ".join(genres) + " |",
        "|---" * (len(genres) + 1) + "|",
    ]
    for style, row in plain["confusion"].items():
        lines.append(f"| {style} | " + " | ".join(str(row.get(g, 0)) for g in genres) + " |")
    lines += ["", "| front end | accuracy (named styles) | majority baseline |", "|---|---|---|"]
    for name, a in result["agreement"].items():
        base = a["majority_baseline"]
        lines.append(
            f"| {name} | {a['accuracy']['mean']:.3f} ± {a['accuracy']['ci95']:.3f} "
            f"(n = {a['n_named']}) | {base['accuracy']:.3f} ({base['style']}) |"
        )
    for task, cols in TASKS.items():
        lines += ["", f"**{task}**", "", "| front end | " + " | ".join(cols) + " |"]
        lines.append("|---" * (len(cols) + 1) + "|")
        res = result["retrieval"][task]
        for name, m in res["front_ends"].items():
            lines.append(f"| {name} | {_cells(m, cols)} |")
        for name, m in res["paired"].items():
            lines.append(f"| {name} (paired) | {_cells(m, cols, '+')} |")
    return "\n".join(lines) + "\n"
