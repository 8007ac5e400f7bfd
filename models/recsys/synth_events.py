"""Synthetic ``interactions`` log with skips, for measuring skip-aware recommendation.

Generative story (all seeded):

* Items fall into ``n_clusters`` taste clusters (genres) of equal size; inside a cluster item
  popularity is Zipf-like.
* Each user likes ``tastes_per_user`` clusters. Listening happens in sessions; each session has
  a *mood*: one of the user's clusters.
* A radio-like feed proposes tracks: from the mood cluster with probability ``p_mood``, from
  another of the user's clusters with ``p_other_taste``, otherwise from a random cluster.
  The user plays on-mood tracks (skipping them with a small ``p_skip_on``), skips off-mood
  tracks with probability ``p_skip_off``, and likes a played track with ``p_like``.

So skips carry information: a skip says "not this cluster right now", and a model that treats
skips as plays learns to recommend the random off-taste tracks the feed pushed. ``write_events``
emits JSON lines in the public ``schemas.events.Interaction`` format.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class SynthConfig:
    """Parameters of the synthetic listening log."""

    n_users: int = 300
    """Number of listeners (default 300)."""
    n_clusters: int = 10
    """Number of taste clusters (default 10)."""
    items_per_cluster: int = 20
    """Items per cluster (default 20)."""
    tastes_per_user: int = 2
    """Clusters each user likes (default 2)."""
    sessions: tuple[int, int] = (3, 6)
    """Min and max sessions per user (default 3..6)."""
    session_len: tuple[int, int] = (4, 12)
    """Min and max proposed tracks per session (default 4..12)."""
    p_mood: float = 0.45
    """Probability that the feed proposes a track of the session's mood (default 0.45)."""
    p_other_taste: float = 0.2
    """Probability of a track from another liked cluster (default 0.2)."""
    p_skip_on: float = 0.1
    """Probability of skipping an on-mood track (default 0.1)."""
    p_skip_off: float = 0.9
    """Probability of skipping an off-mood track (default 0.9)."""
    p_like: float = 0.15
    """Probability that a played track is also liked (default 0.15)."""
    zipf: float = 1.0
    """Exponent of within-cluster popularity ``rank ** -zipf`` (default 1)."""
    seed: int = 0
    """Random seed (default 0)."""


def generate(config: SynthConfig | None = None) -> list[dict[str, object]]:
    """Events as ``Interaction``-shaped dicts, chronological per user."""
    cfg = config or SynthConfig()
    rng = np.random.default_rng(cfg.seed)
    k, m = cfg.n_clusters, cfg.items_per_cluster
    pop = np.arange(1, m + 1, dtype=np.float64) ** -cfg.zipf
    pop /= pop.sum()
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    events: list[dict[str, object]] = []
    for u in range(cfg.n_users):
        tastes = rng.choice(k, size=cfg.tastes_per_user, replace=False)
        t = t0 + timedelta(hours=float(rng.uniform(0, 24)))
        for _ in range(int(rng.integers(cfg.sessions[0], cfg.sessions[1] + 1))):
            mood = int(rng.choice(tastes))
            others = [int(c) for c in tastes if c != mood]
            for _ in range(int(rng.integers(cfg.session_len[0], cfg.session_len[1] + 1))):
                r = rng.random()
                if r < cfg.p_mood:
                    cluster = mood
                elif r < cfg.p_mood + cfg.p_other_taste and others:
                    cluster = int(rng.choice(others))
                else:
                    cluster = int(rng.integers(k))
                item = cluster * m + int(rng.choice(m, p=pop))
                p_skip = cfg.p_skip_on if cluster == mood else cfg.p_skip_off
                kind = "skip" if rng.random() < p_skip else "play"
                if kind == "play" and rng.random() < cfg.p_like:
                    kind = "like"
                events.append(
                    {
                        "event_id": f"e{len(events)}",
                        "type": kind,
                        "user_id": f"u{u}",
                        "track_id": f"t{item}",
                        "occurred_at": t.isoformat(),
                    }
                )
                t += timedelta(seconds=20 if kind == "skip" else 200)
            t += timedelta(hours=float(rng.uniform(6, 48)))
    return events


def write_events(path: Path, config: SynthConfig | None = None) -> int:
    """Write the synthetic log as JSON lines; returns the number of events."""
    events = generate(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        for e in events:
            fh.write(json.dumps(e) + "\n")
    return len(events)


def skip_effect(
    path: Path, models: list[str], seeds: list[int], quick: bool = True
) -> dict[str, dict]:  # type: ignore[type-arg]
    """Evaluate ``models`` on the log at ``path`` three ways -- skip-aware (``events``), skips
    dropped and skips treated as plays -- and return the three ``run_eval`` results."""
    from models.recsys.evaluate import run_eval

    return {
        view: run_eval(view, path, models, seeds, quick)
        for view in ("events", "events-dropskips", "events-skipsasplays")
    }


def main(
    out: Path = Path("/tmp/synth_events.jsonl"),
    compare: str = "",
    seeds: str = "0",
    quick: bool = True,
    users: int = 300,
) -> None:
    """Write the log to ``out``; with ``compare=sasrec,gru4rec,...`` also print the skip-aware
    vs skips-dropped vs skips-as-plays tables."""
    import logging

    import torch
    from rich.console import Console

    from models.recsys.report import table

    torch.set_num_threads(1)
    print(out, write_events(out, SynthConfig(n_users=users)))
    if compare:
        logging.basicConfig(level=logging.WARNING)
        cols = ("HitRate@10", "NDCG@10", "HitRate@20", "NDCG@20")
        seed_list = [int(s) for s in seeds.split(",")]
        for res in skip_effect(out, compare.split(","), seed_list, quick).values():
            Console(width=120).print(table(res, cols))


if __name__ == "__main__":
    import typer

    typer.run(main)
