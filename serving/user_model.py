"""The user (sequence) encoder as Triton serves it: track ids in, top-N track ids out.

``UserModel`` holds the newest artifact of a folder (``models.recsys.export_user``) and
answers ``history`` (track ids, most recent last, empty strings = padding) with the top-N
tracks by score, the history itself excluded, and the artifact's version (the selection is
``models.top_n.recommend``, which production Triton's backend runs too). The string <->
index mapping lives here, so clients need no vocabulary. Unknown track ids are ignored; a
history with no known track gets an empty answer (the model knows nothing of the listener).

Hot reload (``models.versions.NewestVersion``, as for the fusion weights): at most every
``poll_s`` seconds a call looks for a newer complete version folder and swaps it in; a broken
new version is logged and the current one kept.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from models.recsys.export_user import Artifact, latest_artifact, load_artifact
from models.top_n import recommend
from models.versions import NewestVersion

log = logging.getLogger(__name__)

DEFAULT_TOP_N = 100


class NoUserModel(RuntimeError):
    """The folder holds no complete artifact yet."""


@dataclass(frozen=True)
class _Served:
    """A loaded artifact and its string -> index mapping (index j + 1 is vocab[j]; 0 is
    padding), built once per version rather than per call."""

    artifact: Artifact
    index: dict[str, int]

    @classmethod
    def load(cls, path: Path) -> _Served:
        art = load_artifact(path)
        log.info("user model %s: %d items", art.version, len(art.vocab))
        return cls(artifact=art, index={t: j + 1 for j, t in enumerate(art.vocab)})

    def scores(self, seq: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        with torch.inference_mode():
            out: npt.NDArray[np.float32] = self.artifact.module(torch.from_numpy(seq))[0].numpy()
        return out


class UserModel:
    """Thread-safe, hot-reloading top-N recommender over one artifact folder."""

    def __init__(self, root: Path, *, top_n: int = DEFAULT_TOP_N, poll_s: float = 2.0) -> None:
        self.root = Path(root)
        self.top_n = top_n
        self.poll_s = poll_s
        # One inference at a time: the TorchScript module is shared by the server's threads.
        self._lock = threading.Lock()
        self._versions = NewestVersion(
            root=self.root,
            latest=latest_artifact,
            load=_Served.load,
            poll_s=poll_s,
            what="user model",
        )
        self._served: _Served | None = None

    @property
    def version(self) -> str | None:
        return self._served.artifact.version if self._served is not None else None

    def refresh(self, *, force: bool = False) -> None:
        """Swap in a newer artifact if one appeared (checked at most every ``poll_s``)."""
        loaded = self._versions.current(force=force)
        self._served = loaded[1] if loaded is not None else None

    def recommend(self, history: Sequence[str]) -> tuple[list[str], np.ndarray, str]:
        """(track ids, float32 scores, version) of the top-N next tracks after ``history``."""
        with self._lock:
            self.refresh()
            served = self._served
            if served is None:
                raise NoUserModel(f"no user model under {self.root} yet")
            art = served.artifact
            ids, scores = recommend(
                history,
                index=served.index,
                vocab=art.vocab,
                length=int(art.card["L"]),
                top_n=self.top_n,
                score_fn=served.scores,
            )
            return ids, scores, art.version
