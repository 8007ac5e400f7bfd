"""Top-N next tracks after a listener's history, the history excluded: the one selection
both servings of the user (sequence) encoder make.

``serving.user_model.UserModel`` (the embedded stack, scores from PyTorch) and
``models/triton_user_model.py`` (production Triton's Python backend, scores from a BLS call
to the libtorch net) call :func:`recommend` with their own scorer. The Python backend runs
inside the stock ``tritonserver`` image with numpy but neither torch nor this package, so
this module imports numpy only: ``models.export_user_triton`` copies it next to the
backend's ``model.py``, which imports it relatively (``from .top_n import recommend``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import numpy.typing as npt

# Left-padded index sequences [1, L] -> scores over the vocabulary [V] (index j = vocab[j]).
ScoreFn = Callable[[npt.NDArray[np.int64]], npt.NDArray[np.float32]]


def history_indices(history: Sequence[str], index: Mapping[str, int]) -> list[int]:
    """Known track ids of ``history`` as model indices (padding "" and unknown ids dropped)."""
    return [i for t in history if t and (i := index.get(t)) is not None]


def left_padded(indices: Sequence[int], length: int) -> npt.NDArray[np.int64]:
    """The last ``length`` indices as one row ``[1, length]``, 0 (padding) in front."""
    seq = np.zeros((1, length), dtype=np.int64)
    tail = list(indices)[-length:]
    seq[0, length - len(tail) :] = tail
    return seq


def top_unseen(
    scores: npt.NDArray[np.float32], seen: Sequence[int], n: int
) -> npt.NDArray[np.int64]:
    """Positions of the ``n`` best ``scores`` outside ``seen`` (positions), best first and
    ties by position, so the answer is deterministic; fewer when fewer are unseen."""
    scores = np.asarray(scores, dtype=np.float32).reshape(-1).copy()
    excluded = np.asarray(sorted(set(seen)), dtype=np.int64)
    scores[excluded] = -np.inf
    n = min(n, scores.shape[0] - excluded.shape[0])
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    top = np.argpartition(-scores, n - 1)[:n]
    return top[np.lexsort((top, -scores[top]))]


def recommend(
    history: Sequence[str],
    *,
    index: Mapping[str, int],
    vocab: Sequence[str],
    length: int,
    top_n: int,
    score_fn: ScoreFn,
) -> tuple[list[str], npt.NDArray[np.float32]]:
    """Top-N (track ids, float32 scores) after ``history`` (most recent last), none of it;
    ``index[t]`` = j + 1 for ``vocab[j]`` (0 is padding). A history with no known track
    gets an empty answer: the model knows nothing of the listener."""
    idx = history_indices(history, index)
    if not idx:
        return [], np.zeros(0, dtype=np.float32)
    scores = np.asarray(score_fn(left_padded(idx, length)), dtype=np.float32).reshape(-1)
    top = top_unseen(scores, [i - 1 for i in idx], top_n)
    return [vocab[j] for j in top], scores[top]
