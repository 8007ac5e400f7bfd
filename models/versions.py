"""Versioned artifact folders (``root/<version>/``): which one is the newest, and the one
hot reload that serves it.

Shared by the user-encoder artifacts (``models.recsys.export_user``, served by
``serving.user_model``) and the fusion-weights artifacts (``models.fusion_weights``); each
says how to read a version's creation time and how to load one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


def newest_version(root: Path, created_at: Callable[[Path], float | None]) -> Path | None:
    """The folder under ``root`` with the latest ``created_at`` (then the greatest name).

    Hidden folders (temporary ones being written) are skipped, and so is any folder for
    which ``created_at`` returns None or raises OSError/ValueError (incomplete, unreadable).
    """
    try:
        entries = list(root.iterdir())
    except OSError:
        return None
    best: tuple[float, str] | None = None
    found: Path | None = None
    for p in entries:
        if p.name.startswith(".") or not p.is_dir():
            continue
        try:
            created = created_at(p)
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if created is None:
            continue
        key = (created, p.name)
        if best is None or key > best:
            best, found = key, p
    return found


class NewestVersion(Generic[T]):
    """The newest complete version folder under ``root``, loaded, swapped in without a
    restart: a call looks again at most every ``poll_s`` seconds (or when forced).

    A version that fails to load is logged and skipped (the current one stays) until its
    files change. ``root`` None = nothing to watch. Thread-safe; ``clock`` is injectable
    for tests. Used by the user-encoder model (``serving.user_model``) and the fusion
    weights (``models.fusion_weights``), each with its own ``latest`` and ``load``.
    """

    def __init__(
        self,
        *,
        root: Path | None,
        latest: Callable[[Path], Path | None],
        load: Callable[[Path], T],
        poll_s: float,
        what: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.root = root
        self.poll_s = poll_s
        self._latest = latest
        self._load = load
        self._what = what  # names the artifact in the log
        self._clock = clock
        self._lock = threading.Lock()
        self._loaded: tuple[Path, T] | None = None
        self._checked = -float("inf")
        self._failed: set[tuple[Path, float]] = set()

    def current(self, *, force: bool = False) -> tuple[Path, T] | None:
        """(folder, loaded value) in force, None before any version loaded; looks for a
        newer version first if ``poll_s`` has passed since the last look."""
        with self._lock:
            now = self._clock()
            if self.root is not None and (force or now - self._checked >= self.poll_s):
                self._checked = now
                self._look(self.root)
            return self._loaded

    def _look(self, root: Path) -> None:
        path = self._latest(root)
        if path is None or (self._loaded is not None and path == self._loaded[0]):
            return
        try:
            key = (path, _changed_at(path))
        except OSError:  # gone between the listing and now
            return
        if key in self._failed:
            return
        try:
            value = self._load(path)
        except Exception as exc:  # a broken version must not take the served one down
            self._failed.add(key)
            keeping = self._loaded[0].name if self._loaded is not None else "what it served"
            log.warning("%s %s not loaded (%s); keeping %s", self._what, path, exc, keeping)
            return
        was = self._loaded[0].name if self._loaded is not None else "none"
        log.info("%s: %s -> %s (%s)", self._what, was, path.name, path)
        self._loaded = (path, value)


def _changed_at(path: Path) -> float:
    """When the version's files last changed (a failed version is retried after that)."""
    return max([path.stat().st_mtime, *(f.stat().st_mtime for f in path.iterdir())])
