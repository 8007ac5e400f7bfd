"""Fusion weights as a versioned artifact, and the hot-reloading source the worker reads.

An artifact is a folder ``<root>/<version>/weights.json`` (:class:`FusionArtifact`): two mixes
of :class:`models.fusion_rule.MixWeights` -- ``base`` (no sequence model served) and
``sequence`` (with one) -- each with its provenance (dataset, split, metric and value, the
weights the validation split chose, any serving adjustment), plus the date and git commit.
``resonate eval --fusion-weights-out DIR`` writes one from the hybrid models' validation
choices (``models/recsys/weights_export.py``). A version is written to a hidden temporary
folder and renamed into place, so a reader never sees half of one.

The built-in defaults are the newest artifact committed under ``models/artifacts/fusion/``
(:func:`builtin`): the configuration that ``docs/results.md`` ("Served configuration") serves.
:class:`WeightsSource` serves a configured folder's newest version, or the built-in one.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from models.fusion_rule import MixWeights
from models.versions import NewestVersion, newest_version

log = logging.getLogger(__name__)

WEIGHTS_FILE = "weights.json"
BUILTIN_DIR = Path(__file__).parent / "artifacts" / "fusion"
"""Committed artifacts; the newest is the built-in default."""


class Provenance(BaseModel):
    """Where one mix came from."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dataset: str
    """Benchmark name (``30music``, ``lastfm``, ``events`` ...)."""
    sources: list[str]
    """The benchmark files."""
    model: str
    """The offline model whose weight search chose the mix (``hybrid``, ``hybrid-sasrec``)."""
    split: str = "validation"
    metric: str = "NDCG@10"
    value: float
    """Mean of ``metric`` on ``split`` over the runs at their chosen weights."""
    seeds: list[int]
    chosen: MixWeights
    """The validation choice (mean over runs) before any serving adjustment."""
    runs: list[dict[str, Any]] = []
    """Per (benchmark, seed): its chosen weights and validation value."""
    adjustment: str = ""
    """How the served mix differs from ``chosen`` and why (empty = served as chosen)."""


class Mix(BaseModel):
    """A served mix and its provenance."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    weights: MixWeights
    provenance: Provenance


class Taste(BaseModel):
    """How a listener's recent events become a taste vector, and what counts as a fresh
    upload: the ranking's parameters besides the mix. Set by hand, not chosen on validation
    (the offline protocol has no upload times and ranks by the artist stand-in for audio)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    recency_decay: float = Field(0.85, gt=0.0, le=1.0)
    """Weight of the n-th most recent event is ``recency_decay ** n``."""
    like_boost: float = Field(2.0, ge=0.0)
    """A like counts this many plays in the taste vector."""
    skip_weight: float = Field(0.5, ge=0.0)
    """How hard skipped audio pushes the taste vector away."""
    fresh_window_ms: int = Field(24 * 3600 * 1000, gt=0)
    """An upload is fresh for this long."""
    # The skip penalty (models.fusion_rule.SkipPenalty). Defaults 0: an artifact written
    # before these existed serves the rule of its day; the built-in one sets them from the
    # simulated skip panel (docs/results.md, "Skips that teach").
    skip_audio_penalty: float = Field(0.0, ge=0.0)
    """Score removed per unit of audio skip evidence (sounds like a recent skip)."""
    skip_artist_penalty: float = Field(0.0, ge=0.0)
    """Score removed per unit of artist skip evidence (by the artist of a recent skip)."""
    skip_audio_floor: float = Field(0.0, ge=0.0, lt=1.0)
    """Cosine to a skipped track at or below which it says nothing about a candidate."""
    # The learnt per-listener like/skip probability (models.like_skip). Weight 0 (off) by
    # default: it is served only once the simulated panel says it earns its weight.
    like_skip_penalty: float = Field(0.0, ge=0.0)
    """Score removed per unit of learnt skip evidence (``1 - p_finish``, models.like_skip)."""
    like_skip_l2: float = Field(0.03, gt=0.0)
    """L2 penalty of the like/skip model, in units of one fresh event's weight."""
    # Favourites back (the `mix` kind of list, models.fusion_rule.familiarity). No list
    # brought a heard track back before these, so the defaults are the chosen values
    # (docs/results.md, "Lists that bring favourites back"), not an older rule.
    familiar_weight: float = Field(4.0, ge=0.0)
    """Weight of the familiar signal in a `mix` list (0 in a `new` list)."""
    familiar_cooldown: int = Field(3, ge=0)
    """A heard track may come back once this many events followed its last play."""


class FusionArtifact(BaseModel):
    """The content of ``weights.json``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str
    created_at: datetime
    git_commit: str
    base: Mix
    """Mix without a sequence model (its ``sequence`` weight is 0)."""
    sequence: Mix
    """Mix with the served sequence model."""
    taste: Taste = Taste.model_validate({})
    """The taste parameters served with both mixes (artifacts before 2026-12-03 carry none:
    these defaults, which were the code's constants then)."""


def git_commit(cwd: Path | None = None) -> str:
    """The current commit (``+dirty`` with uncommitted changes), or ``unknown``."""
    where = cwd or Path(__file__).parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def new_version(root: Path, now: datetime | None = None) -> str:
    """``fusion-<yyyymmddHHMMSS>`` (UTC), suffixed ``-2``, ``-3`` ... if it exists already."""
    base = f"fusion-{(now or datetime.now(UTC)).strftime('%Y%m%d%H%M%S')}"
    version, k = base, 1
    while (root / version).exists():
        k += 1
        version = f"{base}-{k}"
    return version


def publish(root: Path, artifact: FusionArtifact) -> Path:
    """Write ``root/<artifact.version>/weights.json`` atomically (temporary folder, rename)."""
    root.mkdir(parents=True, exist_ok=True)
    final = root / artifact.version
    if final.exists():
        raise FileExistsError(final)
    tmp = root / f".tmp-{artifact.version}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        (tmp / WEIGHTS_FILE).write_text(artifact.model_dump_json(indent=2) + "\n")
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("wrote fusion weights %s", final)
    return final


def load(path: Path) -> FusionArtifact:
    """Read and validate ``path/weights.json`` (``path`` = one version folder)."""
    return FusionArtifact.model_validate_json((path / WEIGHTS_FILE).read_text())


def latest(root: Path) -> Path | None:
    """The newest complete version folder under ``root`` (by ``created_at``, then name)."""

    def created_at(p: Path) -> float | None:
        if not (p / WEIGHTS_FILE).is_file():
            return None
        return datetime.fromisoformat(
            json.loads((p / WEIGHTS_FILE).read_text())["created_at"]
        ).timestamp()

    return newest_version(root, created_at)


@lru_cache(maxsize=1)
def builtin() -> FusionArtifact:
    """The newest artifact committed under ``models/artifacts/fusion/`` (the defaults)."""
    path = latest(BUILTIN_DIR)
    if path is None:
        raise FileNotFoundError(f"no fusion weights artifact under {BUILTIN_DIR}")
    return load(path)


class WeightsSource:
    """The fusion weights to use now: the newest version under ``dir`` (checked at most every
    ``poll_s`` seconds, swapped in without a restart: ``models.versions.NewestVersion``), or
    the built-in artifact when ``dir`` is None or holds no version that loads. A version that
    fails to load is logged and skipped; the current one stays.

    Thread-safe; ``clock`` is injectable for tests.
    """

    def __init__(
        self,
        *,
        dir: Path | None = None,  # noqa: A002 -- the settings field's name
        poll_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.dir = dir
        self.poll_s = poll_s
        self._builtin = builtin()
        self._versions = NewestVersion(
            root=dir, latest=latest, load=load, poll_s=poll_s, what="fusion weights", clock=clock
        )

    def current(self) -> tuple[FusionArtifact, str]:
        """(artifact, its version); looks for a newer version if ``poll_s`` has passed."""
        loaded = self._versions.current()
        art = loaded[1] if loaded is not None else self._builtin
        return art, art.version
