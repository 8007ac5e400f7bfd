"""The one hot reload of a versioned artifact folder (models/versions.py), which the user
model (serving/user_model.py) and the fusion weights (models/fusion_weights.py) both use;
their own tests drive it with real artifacts."""

from __future__ import annotations

import os
from pathlib import Path

from models.versions import NewestVersion, newest_version


def _latest(root: Path) -> Path | None:
    return newest_version(root, lambda p: float((p / "v.txt").read_text().split()[0]))


def _load(path: Path) -> str:
    text = (path / "v.txt").read_text()
    if "broken" in text:
        raise ValueError("broken")
    return path.name


def _version(root: Path, name: str, created: float, extra: str = "") -> Path:
    (root / name).mkdir()
    (root / name / "v.txt").write_text(f"{created} {extra}")
    return root / name


def _watch(root: Path | None, now: list[float], poll_s: float = 5.0) -> NewestVersion[str]:
    return NewestVersion(
        root=root, latest=_latest, load=_load, poll_s=poll_s, what="test", clock=lambda: now[0]
    )


def test_the_newest_version_is_served_and_looked_for_at_most_every_poll_s(tmp_path: Path) -> None:
    now = [0.0]
    _version(tmp_path, "a", 1)
    watch = _watch(tmp_path, now)
    assert watch.current() == (tmp_path / "a", "a")
    _version(tmp_path, "b", 2)
    now[0] = 4.9
    assert watch.current() == (tmp_path / "a", "a")  # not looked at yet
    assert watch.current(force=True) == (tmp_path / "b", "b")
    _version(tmp_path, "c", 3)
    now[0] = 9.8
    assert watch.current() == (tmp_path / "b", "b")
    now[0] = 9.9
    assert watch.current() == (tmp_path / "c", "c")


def test_a_broken_version_is_skipped_until_its_files_change(tmp_path: Path) -> None:
    now = [0.0]
    watch = _watch(tmp_path, now, poll_s=0.0)
    assert watch.current() is None  # nothing yet
    _version(tmp_path, "a", 1)
    _version(tmp_path, "b", 2, extra="broken")
    assert watch.current() is None  # the newest is broken; nothing else is tried
    _version(tmp_path, "c", 3)
    assert watch.current() == (tmp_path / "c", "c")
    fixed = _version(tmp_path, "d", 4, extra="broken")
    assert watch.current() == (tmp_path / "c", "c")  # kept
    (fixed / "v.txt").write_text("4 repaired")
    os.utime(fixed / "v.txt", (1e10, 1e10))  # a later mtime, whatever the clock's grain
    assert watch.current() == (tmp_path / "d", "d")


def test_no_root_or_a_missing_one_serves_nothing(tmp_path: Path) -> None:
    now = [0.0]
    assert _watch(None, now).current(force=True) is None
    assert _watch(tmp_path / "nope", now).current() is None
