"""Fixtures shared by unit and integration tests: where the real data and weights are."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared real data (../shared/data beside the repo, or RESONATE_DATA_DIR).

    Never copied into the repo. Missing data fails the tests that need it: a skipped
    test would look green while nothing was checked.
    """
    path = Path(os.environ.get("RESONATE_DATA_DIR", ROOT / ".." / "shared" / "data")).resolve()
    if not (path / "audio" / "manifest.csv").is_file():
        pytest.fail(f"real data not found at {path}; set RESONATE_DATA_DIR")
    return path


@pytest.fixture(scope="session")
def weights_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MusiCNN weights converted from the musicnn wheel's TF checkpoint, once per session."""
    from models.convert_musicnn import convert

    return convert(tmp_path_factory.mktemp("weights") / "msd_musicnn.pt")
