"""What the MusiCNN audio signal carries, measured on real clips (``resonate eval-audio``).

The clips of ``<data_dir>/audio`` (``manifest.csv``: two 30 s clips at different offsets of each
of 20 tracks, a weak per-package ``style``) cannot be joined to any listening log, so this
measures audio *retrieval*, the operation the fusion agent's audio signal performs (nearest
tracks by cosine to a taste vector): leave-one-out, every clip queries the other 39.

* **same track** -- the one relevant item is the other clip of the query's track
  (HitRate@1, HitRate@5, MRR);
* **same style** -- relevant items are the clips of other tracks of the query's style (the
  query's own second clip is left out of the ranking, so a track cannot match itself):
  Precision@5 and mean average precision.

Representations, each as the fusion agent pools a track (mean over 3 s patches of the first
30 s, unit length): the MusiCNN embedding (200-d, what is served), MusiCNN's 50 tag
probabilities ("tags"), an MFCC mean + standard deviation control (40-d, paper 2's cheap
baseline) and random ranking (expected values over shuffles). Figures are the mean over
queries with a 95% CI (normal approximation over the 40 queries); MusiCNN is also compared
paired, query by query, with its tags and with the MFCCs.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import librosa
import numpy as np
import torch

from models.convert_musicnn import load_musicnn
from models.frontend import load_audio, log_mel, patches
from models.spec import FrontEndSpec

log = logging.getLogger(__name__)

MAX_SECONDS = 30.0
"""Audio embedded per track, as the ingestion pipeline does (``Settings.max_audio_s``)."""
N_SHUFFLES = 2000


@dataclass(frozen=True, kw_only=True)
class Clip:
    """One row of ``manifest.csv``."""

    clip_id: str
    track_id: str
    style: str
    path: Path


def read_manifest(audio_dir: Path) -> list[Clip]:
    """The clips listed in ``audio_dir/manifest.csv`` (in file order)."""
    with (audio_dir / "manifest.csv").open(newline="") as fh:
        return [
            Clip(
                clip_id=r["clip_id"],
                track_id=r["track_id"],
                style=r["style"],
                path=audio_dir / f"{r['clip_id']}.ogg",
            )
            for r in csv.DictReader(fh)
        ]


def unit_rows(m: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(m, axis=1, keepdims=True)
    out: np.ndarray = m / np.where(n > 0, n, 1.0)
    return out


def represent(clips: Sequence[Clip], weights: Path) -> dict[str, np.ndarray]:
    """Per representation, unit vectors [n_clips, d] (see the module docstring)."""
    torch.set_num_threads(1)
    model, card = load_musicnn(weights)
    spec: FrontEndSpec = card.frontend
    emb, tags, mfcc = [], [], []
    for c in clips:
        y = load_audio(c.path, spec, max_seconds=MAX_SECONDS)
        with torch.no_grad():
            e, t = model(torch.from_numpy(patches(log_mel(y, spec), spec)))
        emb.append(e.numpy().mean(axis=0))
        tags.append(t.numpy().mean(axis=0))
        m = librosa.feature.mfcc(y=y, sr=spec.sample_rate, n_mfcc=20)
        mfcc.append(np.concatenate([m.mean(axis=1), m.std(axis=1)]))
        log.info("embedded %s", c.clip_id)
    # MFCC dimensions have very different scales: standardise them across clips first.
    mf = np.asarray(mfcc)
    mf = (mf - mf.mean(axis=0)) / np.where(mf.std(axis=0) > 0, mf.std(axis=0), 1.0)
    return {
        "musicnn": unit_rows(np.asarray(emb)),
        "musicnn-tags": unit_rows(np.asarray(tags)),
        "mfcc": unit_rows(mf),
    }


def _query_metrics(order: np.ndarray, relevant: np.ndarray) -> dict[str, float]:
    """Metrics of one ranked candidate list (``relevant`` is a boolean mask over ``order``)."""
    rel = relevant[order]
    hits = np.flatnonzero(rel)
    if len(hits) == 0:
        return {}
    precisions = np.arange(1, len(hits) + 1) / (hits + 1)
    return {
        "HitRate@1": float(rel[:1].any()),
        "HitRate@5": float(rel[:5].any()),
        "MRR": float(1.0 / (hits[0] + 1)),
        "Precision@5": float(rel[:5].mean()),
        "mAP": float(precisions.mean()),
    }


Ranker = Callable[[int, np.ndarray], np.ndarray]


def summarise(per: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    return {
        k: {
            "mean": float(np.mean(v)),
            "ci95": float(1.96 * np.std(v, ddof=1) / np.sqrt(len(v))),
            "n": len(v),
        }
        for k, v in per.items()
    }


def retrieval(clips: Sequence[Clip], rank: Ranker, task: str) -> dict[str, dict[str, float]]:
    """Mean and 95% CI over queries of ``task`` (``same-track`` or ``same-style``).
    ``rank(query, candidates)`` orders the candidate indices, best first."""
    return summarise(per_query(clips, rank, task))


def per_query(clips: Sequence[Clip], rank: Ranker, task: str) -> dict[str, list[float]]:
    """Each metric's value per query (see ``retrieval``)."""
    per: dict[str, list[float]] = {}
    for q, c in enumerate(clips):
        if task == "same-track":
            cand = np.array([k for k in range(len(clips)) if k != q])
            relevant = np.array([clips[k].track_id == c.track_id for k in cand])
        else:
            cand = np.array([k for k in range(len(clips)) if clips[k].track_id != c.track_id])
            relevant = np.array([clips[k].style == c.style for k in cand])
        order = rank(q, cand)
        pos = {k: n for n, k in enumerate(cand)}
        for name, v in _query_metrics(np.array([pos[k] for k in order]), relevant).items():
            per.setdefault(name, []).append(v)
    return per


def cosine_ranker(vectors: np.ndarray) -> Ranker:
    """Candidates by cosine to the query (ties by index)."""

    def rank(q: int, cand: np.ndarray) -> np.ndarray:
        sims = vectors[cand] @ vectors[q]
        out: np.ndarray = cand[np.lexsort((cand, -sims))]
        return out

    return rank


def random_expectation(clips: Sequence[Clip], task: str, seed: int = 0) -> dict[str, Any]:
    """Random ranking: every metric averaged over ``N_SHUFFLES`` shuffles (CI: over queries of
    the shuffle-averaged values is ~0, so the spread of one shuffle is reported instead)."""
    rng = np.random.default_rng(seed)
    runs = [
        retrieval(clips, lambda q, cand: rng.permutation(cand), task)
        for _ in range(N_SHUFFLES // 10)
    ]
    return {
        k: {
            "mean": float(np.mean([r[k]["mean"] for r in runs])),
            "ci95": float(np.mean([r[k]["ci95"] for r in runs])),
            "n": runs[0][k]["n"],
        }
        for k in runs[0]
    }


def evaluate_audio(audio_dir: Path, weights: Path) -> dict[str, Any]:
    """Every representation on both tasks, plus random; JSON-able."""
    clips = read_manifest(audio_dir)
    reps = represent(clips, weights)
    styles: dict[str, int] = {}
    for c in clips:
        styles[c.style] = styles.get(c.style, 0) + 1
    out: dict[str, Any] = {
        "audio_dir": str(audio_dir),
        "n_clips": len(clips),
        "n_tracks": len({c.track_id for c in clips}),
        "styles": styles,
        "tasks": {},
    }
    out["paired"] = {}
    for task in ("same-track", "same-style"):
        per = {name: per_query(clips, cosine_ranker(v), task) for name, v in reps.items()}
        res: dict[str, Any] = {name: summarise(p) for name, p in per.items()}
        res["random"] = random_expectation(clips, task)
        out["tasks"][task] = res
        # Paired over the same queries: what MusiCNN adds over its own tags and over MFCCs.
        out["paired"][task] = {
            f"musicnn - {other}": summarise(
                {k: list(np.subtract(per["musicnn"][k], per[other][k])) for k in per["musicnn"]}
            )
            for other in ("musicnn-tags", "mfcc")
        }
    return out


def markdown(result: dict[str, Any]) -> str:
    """The figures as two Markdown tables (for docs/results.md)."""
    lines = []
    for task, cols in (
        ("same-track", ("HitRate@1", "HitRate@5", "MRR")),
        ("same-style", ("Precision@5", "mAP")),
    ):
        lines += [f"**{task}**", "", "| representation | " + " | ".join(cols) + " |"]
        lines.append("|---" * (len(cols) + 1) + "|")
        for name, m in result["tasks"][task].items():
            cells = [f"{m[c]['mean']:.3f} ± {m[c]['ci95']:.3f}" for c in cols]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        for name, m in result["paired"][task].items():
            cells = [f"{m[c]['mean']:+.3f} ± {m[c]['ci95']:.3f}" for c in cols]
            lines.append(f"| {name} (paired) | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)
