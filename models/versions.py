"""Versioned artifact folders (``root/<version>/``): which one is the newest.

Shared by the user-encoder artifacts (``models.recsys.export_user``) and the fusion-weights
artifacts (``models.fusion_weights``); each says how to read a version's creation time.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


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
