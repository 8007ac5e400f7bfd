"""The user (sequence) encoder as Triton serves it: track ids in, top-N track ids out.

``UserModel`` holds the newest artifact of a folder (``models.recsys.export_user``) and
answers ``history`` (track ids, most recent last, empty strings = padding) with the top-N
tracks by score, the history itself excluded, and the artifact's version (the selection is
``models.top_n.recommend``, which production Triton's backend runs too). The string <->
index mapping lives here, so clients need no vocabulary. Unknown track ids are ignored; a
history with no known track gets an empty answer (the model knows nothing of the listener).

Hot reload: at most every ``poll_s`` seconds a call looks for a newer complete version folder
and swaps it in; a broken new version is logged and the current one kept.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from models.recsys.export_user import Artifact, latest_artifact, load_artifact
from models.top_n import recommend

log = logging.getLogger(__name__)

DEFAULT_TOP_N = 100


class NoUserModel(RuntimeError):
    """The folder holds no complete artifact yet."""


class UserModel:
    """Thread-safe, hot-reloading top-N recommender over one artifact folder."""

    def __init__(self, root: Path, *, top_n: int = DEFAULT_TOP_N, poll_s: float = 2.0) -> None:
        self.root = Path(root)
        self.top_n = top_n
        self.poll_s = poll_s
        self._lock = threading.Lock()
        self._artifact: Artifact | None = None
        self._index: dict[str, int] = {}
        self._checked = -float("inf")
        self._failed: set[Path] = set()

    @property
    def version(self) -> str | None:
        return self._artifact.version if self._artifact is not None else None

    def refresh(self, *, force: bool = False) -> None:
        """Swap in a newer artifact if one appeared (checked at most every ``poll_s``)."""
        now = time.monotonic()
        if not force and now - self._checked < self.poll_s:
            return
        self._checked = now
        path = latest_artifact(self.root)
        if path is None or path in self._failed:
            return
        if self._artifact is not None and path == self._artifact.path:
            return
        try:
            art = load_artifact(path)
        except Exception:  # a broken artifact must not take the served one down
            log.exception("cannot load user model %s; keeping %s", path, self.version)
            self._failed.add(path)
            return
        self._artifact = art
        # Index j + 1 is vocab[j] (0 is padding).
        self._index = {t: j + 1 for j, t in enumerate(art.vocab)}
        log.info("user model %s loaded from %s (%d items)", art.version, path, len(art.vocab))

    def recommend(self, history: Sequence[str]) -> tuple[list[str], np.ndarray, str]:
        """(track ids, float32 scores, version) of the top-N next tracks after ``history``."""
        with self._lock:
            self.refresh()
            art = self._artifact
            if art is None:
                raise NoUserModel(f"no user model under {self.root} yet")
            module = art.module

            def scores(seq: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
                with torch.inference_mode():
                    out: npt.NDArray[np.float32] = module(torch.from_numpy(seq))[0].numpy()
                return out

            ids, top = recommend(
                history,
                index=self._index,
                vocab=art.vocab,
                length=int(art.card["L"]),
                top_n=self.top_n,
                score_fn=scores,
            )
            return ids, top, art.version
