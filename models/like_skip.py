"""A per-listener like/skip probability learnt from the audio of kept and skipped tracks.

The seed's idea (a model that learns, per listener, which sounds they finish and which they
skip) on our features: each of the listener's recent tracks with an audio embedding is an
example, label 1 if its newest event is a play or like (kept), 0 if it is a skip; the model
gives every candidate a probability ``p_finish`` that the listener would finish it.

The model: **L2-regularised logistic regression on unit vectors**, fitted by Newton (IRLS)
steps, per listener, per refresh. Why this and not a neural model: a listener's window holds
a handful of examples in 200 dimensions (MusiCNN), so anything bigger would memorise them;
an L2-regularised linear model is the most a few examples can pin down, and it is exact and
cheap. Details that keep it honest on a handful of examples:

* **Only in the span of the examples.** With an isotropic L2 penalty the optimal weight vector
  lies in the span of the examples (the representer theorem), so the fit runs on the
  examples' coordinates in an orthonormal basis of that span (``r <= n`` parameters, an SVD
  of an ``n x 200`` matrix), not on 200: fit and scoring of 60 candidates take ~0.6 ms for
  4 examples and ~2.3 ms for 50 on this (busy, 2-core) machine.
  Identical vectors in both classes then collapse to one coordinate the labels cancel on.
* **Balanced classes.** Each example weighs its recency (as the taste vector weighs events),
  and each class is rescaled to half the total, so the intercept does not carry the
  listener's share of skips: ``p_finish = 0.5`` is "as close to what they kept as to what
  they skipped". How often a listener skips is not a property of the candidate, and the
  ranking only needs to know which candidates lean towards the skips.
* **Unpenalised intercept, penalised weights.** ``l2`` is in units of examples' weight (one
  fresh event weighs 1): larger means flatter probabilities.
* **Silent without contrast.** No skips, no kept tracks, or no example with a usable vector
  (zero or non-finite vectors are dropped): no model (:func:`fit` returns None) and no
  evidence, so a listener who skipped nothing ranks exactly as before. A listener who only
  skips is left to the audio skip penalty (``models.fusion_rule.audio_skip_evidence``): one
  class alone teaches a logistic model only its intercept.

The fusion uses it as evidence against a candidate (:func:`learnt_skip_evidence`: the skip
probability ``1 - p_finish``, in [0, 1]), subtracted after the mix with weight
``SkipPenalty.learnt`` (``models.fusion_rule.penalise``), like the other skip evidence. Why
``1 - p`` and not only the part beyond a coin flip (``max(0, 1 - 2p)``): a track that sounds
like a skip *and* like a kept track sits near 0.5 (on the real clips, the other clip of a
skipped track that also sounds like a played one: 0.50 against 0.93 when another style was
skipped), and the clipped form would say nothing about it; it also did worse on the simulated
panel (``resonate skip-panel``). Its cost: every candidate with audio loses something, one
without audio nothing, which the panel (all clips have audio) cannot measure -- one reason it
is not served (``Taste.like_skip_penalty`` 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Newton steps at most; a regularised logistic fit on a handful of examples converges in ~5
MAX_STEPS = 25
TOL = 1e-8


@dataclass(frozen=True, kw_only=True)
class LikeSkip:
    """One listener's fitted model: ``p_finish(x) = sigmoid(w . unit(x) + b)``."""

    w: np.ndarray
    b: float

    def p_finish(self, candidates: np.ndarray) -> np.ndarray:
        """Probability of finishing each candidate (rows); 0.5 for a zero or non-finite row."""
        x, ok = _unit_rows(candidates)
        if x.size == 0:
            return np.zeros(0)
        z = x @ self.w + self.b
        out: np.ndarray = np.where(ok, _sigmoid(z), 0.5)
        return out


def fit(
    kept: np.ndarray,
    skipped: np.ndarray,
    *,
    l2: float,
    kept_weight: np.ndarray | None = None,
    skipped_weight: np.ndarray | None = None,
) -> LikeSkip | None:
    """The listener's model from the vectors (rows) of what they kept and skipped, each with
    an optional non-negative weight (their recency; default 1); None without both classes."""
    if l2 <= 0.0:
        raise ValueError("l2 must be positive (the fit is unbounded on separable examples)")
    xk, wk = _examples(kept, kept_weight)
    xs, ws = _examples(skipped, skipped_weight)
    if not len(xk) or not len(xs):
        return None
    total = float(wk.sum() + ws.sum())
    x = np.concatenate([xk, xs])
    y = np.concatenate([np.ones(len(xk)), np.zeros(len(xs))])
    sw = np.concatenate([wk * (total / 2 / wk.sum()), ws * (total / 2 / ws.sum())])
    # Orthonormal basis of the examples' span: the optimum lies in it (see the docstring).
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    basis = vt[s > 1e-9 * s[0]]
    beta, b = _newton(x @ basis.T, y, sw, l2)
    return LikeSkip(w=basis.T @ beta, b=b)


def learnt_skip_evidence(model: LikeSkip | None, candidates: np.ndarray) -> np.ndarray:
    """Per candidate (rows), the probability of a skip, ``1 - p_finish`` in [0, 1]; all 0
    without a model (no contrast: nothing to say)."""
    n = len(candidates)
    if model is None or n == 0:
        return np.zeros(n)
    out: np.ndarray = 1.0 - model.p_finish(candidates)
    return out


def _newton(z: np.ndarray, y: np.ndarray, sw: np.ndarray, l2: float) -> tuple[np.ndarray, float]:
    """Weighted L2-regularised logistic regression (weights penalised, intercept not), by
    Newton steps from zero: (coefficients, intercept)."""
    r = z.shape[1]
    a = np.hstack([z, np.ones((len(z), 1))])
    reg = np.full(r + 1, l2)
    reg[-1] = 0.0
    theta = np.zeros(r + 1)
    for _ in range(MAX_STEPS):
        p = _sigmoid(a @ theta)
        grad = a.T @ (sw * (p - y)) + reg * theta
        # The tiny ridge on the intercept keeps the step defined on degenerate examples.
        hess = (a * (sw * p * (1.0 - p))[:, None]).T @ a + np.diag(reg + 1e-9)
        step = np.linalg.solve(hess, grad)
        theta -= step
        if float(np.abs(step).max()) < TOL:
            break
    return theta[:-1], float(theta[-1])


def _examples(m: np.ndarray, weight: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Usable rows as unit vectors, with their weights (non-positive weights dropped too)."""
    u, ok = _unit_rows(m)
    w = np.ones(len(u)) if weight is None else np.asarray(weight, dtype=np.float64)
    keep = ok & np.isfinite(w) & (w > 0)
    return u[keep], w[keep]


def _unit_rows(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows scaled to unit length, and which rows were usable (finite, non-zero); unusable
    rows come back as zeros."""
    x = np.asarray(m, dtype=np.float64)
    if x.ndim != 2:  # one vector, or an empty list
        x = x.reshape(1, -1) if x.size else x.reshape(0, 0)
    finite = np.isfinite(x).all(axis=1)
    x = np.where(finite[:, None], x, 0.0)
    n = np.linalg.norm(x, axis=1)
    ok = finite & (n > 0)
    return np.where(ok[:, None], x / np.where(ok, n, 1.0)[:, None], 0.0), ok


def _sigmoid(z: np.ndarray) -> np.ndarray:
    out: np.ndarray = 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, dtype=np.float64)))
    return out
