"""Prequential scoring of recommendation lists: was the next event in the list before it?

A replay (``resonate replay``) sends a real log through the running system in time order and
keeps, for every scored event, the **last list the listener had received before the event was
sent**. This module scores those (list, event) pairs, and only that: it knows nothing of Kafka
or of how the lists were made, so the offline counterpart (``models.recsys.counterpart``)
is scored by the very same functions.

Per scored event, with ``L`` the list (best first) and ``t`` the event's track:

* ``HR@k`` = 1 if ``t`` is among the first ``k`` items of ``L``;
* ``NDCG@10`` = ``1 / log2(pos + 2)`` for a hit at 0-based ``pos < 10``, else 0 (one target, so
  the ideal DCG is 1);
* ``MRR`` = ``1 / (pos + 1)`` for a hit anywhere in ``L``, else 0 (``L`` has the served K
  items, 20 in a replay, so this is MRR@20);
* a listener with no list yet scores 0 everywhere (the system had nothing to offer).

Aggregation is over **listeners** (the unit that is sampled): each listener's events are
averaged first, then mean and a normal-approximation 95% CI over listeners
(``models.recsys.metrics.summarize``, as in the offline tables). The ratio of two figures
gets a CI from a paired bootstrap over listeners (:func:`ratio_ci`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from models.recsys.metrics import summarize

METRICS: tuple[str, ...] = ("HR@10", "HR@20", "NDCG@10", "MRR")
"""The figures of a replay, in table order."""


class Figure(BaseModel):
    """One metric over listeners."""

    model_config = ConfigDict(frozen=True)

    mean: float = Field(description="Mean over listeners of the per-listener mean.")
    ci95: float = Field(description="Half-width of the normal-approximation 95% CI.")
    listeners: int = Field(description="Listeners averaged over.")


class Scored(BaseModel):
    """Per-event metrics of one set of (list, event) pairs, and their summary."""

    model_config = ConfigDict(frozen=True)

    listeners: list[str] = Field(description="The listener of each scored event.")
    per_event: dict[str, list[float]] = Field(description="Metric -> value per scored event.")
    summary: dict[str, Figure] = Field(description="Metric -> figure over listeners.")

    @property
    def events(self) -> int:
        """Scored events."""
        return len(self.listeners)


def event_metrics(ranked: Sequence[str] | None, target: str) -> dict[str, float]:
    """The metrics of one event against the list the listener held before it."""
    pos = -1
    if ranked:
        try:
            pos = list(ranked).index(target)
        except ValueError:
            pos = -1
    hit = pos >= 0
    return {
        "HR@10": float(hit and pos < 10),
        "HR@20": float(hit and pos < 20),
        "NDCG@10": 1.0 / math.log2(pos + 2) if hit and pos < 10 else 0.0,
        "MRR": 1.0 / (pos + 1) if hit else 0.0,
    }


def score(
    pairs: Sequence[tuple[str, Sequence[str] | None, str]],
) -> Scored:
    """Score ``(listener, list before the event or None, event's track)`` triples."""
    per_event: dict[str, list[float]] = {m: [] for m in METRICS}
    listeners: list[str] = []
    for listener, ranked, target in pairs:
        listeners.append(listener)
        for name, value in event_metrics(ranked, target).items():
            per_event[name].append(value)
    return Scored(
        listeners=listeners, per_event=per_event, summary=summarize_over(per_event, listeners)
    )


def summarize_over(
    per_event: Mapping[str, Sequence[float]], listeners: Sequence[str]
) -> dict[str, Figure]:
    """Mean and 95% CI over listeners (events averaged within each listener first)."""
    out: dict[str, Figure] = {}
    index: dict[str, int] = {}
    groups = [index.setdefault(u, len(index)) for u in listeners]
    for name, values in per_event.items():
        if not listeners:
            out[name] = Figure(mean=float("nan"), ci95=float("nan"), listeners=0)
            continue
        s = summarize(np.asarray(values, dtype=np.float64), groups)
        out[name] = Figure(mean=s.mean, ci95=s.ci95, listeners=s.n)
    return out


def per_listener(values: Sequence[float], listeners: Sequence[str]) -> dict[str, float]:
    """Listener -> mean of their events' values."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for v, u in zip(values, listeners, strict=True):
        sums[u] = sums.get(u, 0.0) + float(v)
        counts[u] = counts.get(u, 0) + 1
    return {u: sums[u] / counts[u] for u in sums}


def ratio_ci(
    live: Scored, offline: Scored, metric: str, *, n_boot: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """``(ratio, low, high)``: live mean / offline mean of ``metric`` over the listeners both
    scored, with a 95% percentile interval from a paired bootstrap over those listeners
    (resampling a listener resamples both of their figures: the pairing is what makes the
    interval tight). NaN when the offline mean is 0."""
    a = per_listener(live.per_event[metric], live.listeners)
    b = per_listener(offline.per_event[metric], offline.listeners)
    common = sorted(set(a) & set(b))
    if not common:
        return (float("nan"), float("nan"), float("nan"))
    x = np.asarray([a[u] for u in common])
    y = np.asarray([b[u] for u in common])
    if y.sum() == 0:
        return (float("nan"), float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(common), size=(n_boot, len(common)))
    xs, ys = x[idx].sum(axis=1), y[idx].sum(axis=1)
    ratios = xs[ys > 0] / ys[ys > 0]
    low, high = np.percentile(ratios, [2.5, 97.5]) if ratios.size else (np.nan, np.nan)
    return (float(x.sum() / y.sum()), float(low), float(high))
