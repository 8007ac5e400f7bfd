"""Full-ranking (and sampled) top-K metrics for next-item recommendation.

Every case has a score row over all items and one or more held-out targets. Ties in the score
are broken uniformly at random (a seeded, per-row permutation), so a constant scorer gets
exactly the Random baseline's expected metrics instead of an optimistic or pessimistic artefact.

Per case, with ranked list ``L`` (top K) and target set ``T``:

* ``HitRate@K`` = 1 if any target is in ``L``;
* ``Recall@K`` = ``|L & T| / |T|``;
* ``NDCG@K`` = DCG / ideal DCG with binary gains, ``1 / log2(pos + 2)`` (pos 0-based);
* ``MRR@K`` = ``1 / (pos + 1)`` of the first hit, 0 if none;
* ``MAP@K`` = sum of precision@pos over hits / ``min(|T|, K)``.

With a single target, HitRate = Recall and MRR = MAP.

History exclusion: S3-Rec's full-sort evaluation sets the scores of the user's history items
to 0 before ranking (``rating_pred[train_matrix > 0] = 0``), i.e. it *does* exclude them (here
more strictly, to -inf). Last.fm sequences have no repeats, so this never removes a target.
It is a flag, ``exclude_history=True`` by default; music logs with replays (30Music) turn it off.

Aggregation: mean over cases (or over groups, e.g. users, after averaging inside each group)
with a normal-approximation 95% confidence interval, ``1.96 * sd / sqrt(n)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

KS: tuple[int, ...] = (5, 10, 20)
METRICS: tuple[str, ...] = ("HitRate", "Recall", "NDCG", "MRR", "MAP")


@dataclass(frozen=True)
class Summary:
    """Mean of a per-case metric with its 95% confidence half-width."""

    mean: float
    ci95: float
    n: int


def mask_history(
    scores: np.ndarray, histories: Sequence[Sequence[int]], value: float = -np.inf
) -> np.ndarray:
    """Copy of ``scores`` [B, n_items] with each row's history items set to ``value``."""
    out = np.array(scores, dtype=np.float64, copy=True)
    for b, hist in enumerate(histories):
        if len(hist):
            out[b, np.asarray(hist, dtype=np.int64)] = value
    return out


def top_k(scores: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Indices [B, k] of the k best items per row, ties broken by a random permutation."""
    b, n = scores.shape
    k = min(k, n)
    # An independent random column order per row: ties never favour the same items.
    perm = rng.permuted(np.tile(np.arange(n), (b, 1)), axis=1)
    shuffled = np.take_along_axis(scores, perm, axis=1)
    part = np.argpartition(-shuffled, k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(shuffled, part, axis=1)
    # Order the k candidates by score, then by shuffled position (stable random tie-break).
    order = np.lexsort((part, -vals), axis=1)
    best = np.take_along_axis(part, order, axis=1)
    # argpartition may pick an arbitrary subset of a tie at the k-th score: fix that by
    # recomputing with a full stable sort only for rows where the k-th score is tied outside.
    kth = np.take_along_axis(shuffled, best[:, -1:], axis=1)
    tied_rows = np.nonzero((shuffled == kth).sum(axis=1) > (vals == kth).sum(axis=1))[0]
    if tied_rows.size:
        full = np.argsort(-shuffled[tied_rows], axis=1, kind="stable")[:, :k]
        best[tied_rows] = full
    result: np.ndarray = np.take_along_axis(perm, best, axis=1)
    return result


def case_metrics(
    ranked: np.ndarray, targets: Sequence[Sequence[int]], ks: Sequence[int] = KS
) -> dict[str, np.ndarray]:
    """Per-case metrics from ranked lists [B, >= max(ks)] and per-case target sets."""
    b = len(targets)
    out = {f"{m}@{k}": np.zeros(b) for m in METRICS for k in ks}
    for row in range(b):
        tset = set(int(t) for t in targets[row])
        if not tset:
            raise ValueError(f"case {row} has no target")
        hits = np.array([int(i) in tset for i in ranked[row, : max(ks)]], dtype=bool)
        for k in ks:
            h = hits[:k]
            pos = np.nonzero(h)[0]
            if pos.size == 0:
                continue
            n_rel = len(tset)
            out[f"HitRate@{k}"][row] = 1.0
            out[f"Recall@{k}"][row] = pos.size / n_rel
            ideal = (1.0 / np.log2(np.arange(min(n_rel, k)) + 2)).sum()
            out[f"NDCG@{k}"][row] = (1.0 / np.log2(pos + 2)).sum() / ideal
            out[f"MRR@{k}"][row] = 1.0 / (pos[0] + 1)
            prec = np.arange(1, pos.size + 1) / (pos + 1)
            out[f"MAP@{k}"][row] = prec.sum() / min(n_rel, k)
    return out


def _as_list(t: object) -> list[int]:
    if isinstance(t, int | np.integer):
        return [int(t)]
    return [int(x) for x in t]  # type: ignore[attr-defined]


def full_ranking(
    scores: np.ndarray,
    targets: Sequence[int] | Sequence[Sequence[int]],
    histories: Sequence[Sequence[int]] | None = None,
    exclude_history: bool = True,
    ks: Sequence[int] = KS,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Per-case full-ranking metrics; ``targets`` are ints (one each) or lists of ints."""
    tsets = [_as_list(t) for t in targets]
    if exclude_history and histories is not None:
        scores = mask_history(scores, histories)
    ranked = top_k(np.asarray(scores, dtype=np.float64), max(ks), np.random.default_rng(seed))
    return case_metrics(ranked, tsets, ks)


def sampled_ranking(
    scores: np.ndarray,
    targets: Sequence[int],
    histories: Sequence[Sequence[int]],
    n_negatives: int = 99,
    ks: Sequence[int] = KS,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Per-case metrics ranking the target among ``n_negatives`` uniformly sampled items the
    user has not interacted with (the S3-Rec / SASRec "99 negatives" protocol)."""
    rng = np.random.default_rng(seed)
    n_items = scores.shape[1]
    rows: list[np.ndarray] = []
    for b, t in enumerate(targets):
        seen = set(int(i) for i in histories[b]) | {int(t)}
        if n_items - len(seen) < n_negatives:
            raise ValueError("not enough unseen items to sample negatives")
        negs: list[int] = []
        while len(negs) < n_negatives:
            for c in rng.integers(0, n_items, size=2 * n_negatives):
                if int(c) not in seen:
                    seen.add(int(c))
                    negs.append(int(c))
                    if len(negs) == n_negatives:
                        break
        rows.append(np.array([int(t), *negs]))
    cand = np.stack(rows)
    sub = np.take_along_axis(np.asarray(scores, dtype=np.float64), cand, axis=1)
    ranked_local = top_k(sub, min(max(ks), sub.shape[1]), rng)
    ranked = np.take_along_axis(cand, ranked_local, axis=1)
    return case_metrics(ranked, [[int(t)] for t in targets], ks)


def summarize(values: np.ndarray, groups: Sequence[int] | None = None) -> Summary:
    """Mean and normal-approximation 95% CI; with ``groups``, average within groups first."""
    v = np.asarray(values, dtype=np.float64)
    if groups is not None:
        g = np.asarray(groups)
        uniq, inv = np.unique(g, return_inverse=True)
        v = np.bincount(inv, weights=v) / np.bincount(inv)
        del uniq
    n = v.size
    if n == 0:
        return Summary(float("nan"), float("nan"), 0)
    sd = float(v.std(ddof=1)) if n > 1 else 0.0
    return Summary(float(v.mean()), 1.96 * sd / float(np.sqrt(n)), n)


def summarize_all(
    per_case: dict[str, np.ndarray], groups: Sequence[int] | None = None
) -> dict[str, Summary]:
    """``summarize`` applied to every metric of a ``full_ranking`` result."""
    return {k: summarize(v, groups) for k, v in per_case.items()}
