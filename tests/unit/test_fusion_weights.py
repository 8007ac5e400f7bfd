"""Fusion weights as an artifact: built-in defaults, atomic publish, hot reload, eval export."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from models.fusion_rule import MixWeights
from models.fusion_weights import (
    BUILTIN_DIR,
    WEIGHTS_FILE,
    FusionArtifact,
    WeightsSource,
    builtin,
    latest,
    load,
    publish,
)
from models.recsys.weights_export import artifact_from_report, served
from schemas.settings import Settings
from streams.fusion import DEFAULT_WEIGHTS, SEQUENCE_WEIGHTS, FusionWeights

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def artifact(version: str, audio: float, at: datetime) -> FusionArtifact:
    b = builtin()
    mix = b.base.model_copy(update={"weights": MixWeights(audio=audio, collab=1 - audio)})
    return b.model_copy(update={"version": version, "created_at": at, "base": mix})


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_defaults_are_the_committed_artifact() -> None:
    committed = sorted(p for p in BUILTIN_DIR.iterdir() if (p / WEIGHTS_FILE).is_file())
    newest = json.loads((committed[-1] / WEIGHTS_FILE).read_text())
    assert builtin().version == newest["version"]
    for weights, key in ((DEFAULT_WEIGHTS, "base"), (SEQUENCE_WEIGHTS, "sequence")):
        assert weights.mix().model_dump() == newest[key]["weights"]
    assert FusionWeights() == DEFAULT_WEIGHTS
    # The documented served configuration (docs/results.md) is what the artifact holds.
    assert (DEFAULT_WEIGHTS.audio, DEFAULT_WEIGHTS.collab, DEFAULT_WEIGHTS.popularity) == (
        0.45,
        0.45,
        0.1,
    )
    assert SEQUENCE_WEIGHTS.sequence == 0.45 and SEQUENCE_WEIGHTS.audio == 0.3
    assert Settings().fusion_weights_dir is None


def test_publish_is_atomic_and_latest_is_newest(tmp_path: Path) -> None:
    publish(tmp_path, artifact("fusion-a", 0.2, T0))
    publish(tmp_path, artifact("fusion-b", 0.7, T0 + timedelta(seconds=1)))
    (tmp_path / ".tmp-fusion-c-1").mkdir()  # a half-written version is never picked
    (tmp_path / ".tmp-fusion-c-1" / WEIGHTS_FILE).write_text("{")
    path = latest(tmp_path)
    assert path is not None and path.name == "fusion-b"
    assert load(path).base.weights.audio == 0.7
    with pytest.raises(FileExistsError):
        publish(tmp_path, artifact("fusion-b", 0.1, T0))
    assert not list(tmp_path.glob(".tmp-fusion-b*"))


def test_source_without_dir_serves_builtin() -> None:
    art, version = WeightsSource(dir=None).current()
    assert version == builtin().version and art.sequence.weights.sequence == 0.45


def test_source_picks_up_a_new_version_after_the_poll_interval(tmp_path: Path) -> None:
    clock = Clock()
    publish(tmp_path, artifact("fusion-a", 0.2, T0))
    src = WeightsSource(dir=tmp_path, poll_s=5.0, clock=clock)
    assert src.current()[1] == "fusion-a"
    publish(tmp_path, artifact("fusion-b", 0.7, T0 + timedelta(seconds=1)))
    clock.t = 4.0
    assert src.current()[1] == "fusion-a"  # not looked at yet
    clock.t = 5.0
    art, version = src.current()
    assert version == "fusion-b" and art.base.weights.audio == 0.7


def test_source_keeps_current_version_when_the_newest_is_broken(tmp_path: Path) -> None:
    clock = Clock()
    publish(tmp_path, artifact("fusion-a", 0.2, T0))
    src = WeightsSource(dir=tmp_path, poll_s=1.0, clock=clock)
    assert src.current()[1] == "fusion-a"
    bad = tmp_path / "fusion-z"
    bad.mkdir()
    raw = json.loads(artifact("fusion-z", 0.5, T0 + timedelta(seconds=9)).model_dump_json())
    raw["base"]["weights"]["audio"] = -1.0  # invalid: weights are non-negative
    (bad / WEIGHTS_FILE).write_text(json.dumps(raw))
    clock.t = 2.0
    assert src.current()[1] == "fusion-a"


def test_empty_or_missing_dir_serves_builtin(tmp_path: Path) -> None:
    assert WeightsSource(dir=tmp_path / "nope").current()[1] == builtin().version


def _report(weights: list[dict[str, float]], model: str) -> dict[str, Any]:
    runs = [
        {"seed": k, "best_valid_ndcg10": 0.2 + k / 100, "weights": w} for k, w in enumerate(weights)
    ]
    bench = {"dataset": "30music", "path": "/d/slice.0.txt", "models": {model: {"runs": runs}}}
    return {"benchmarks": [bench]}


def test_eval_report_becomes_an_artifact_with_provenance() -> None:
    zero = {"fresh": 0.0, "sequence": 0.0, "popularity": 0.0}
    report = _report(
        [{**zero, "audio": 0.6, "collab": 0.4}, {**zero, "audio": 0.4, "collab": 0.6}], "hybrid"
    )
    art = artifact_from_report(report, version="fusion-x", now=T0, commit="abc")
    prov = art.base.provenance
    assert prov.chosen.audio == 0.5 and prov.chosen.collab == 0.5
    assert prov.model == "hybrid" and prov.split == "validation" and prov.metric == "NDCG@10"
    assert prov.value == pytest.approx(0.205) and prov.seeds == [0, 1]
    assert prov.sources == ["slice.0.txt"] and art.git_commit == "abc"
    # Served: popularity floor for listeners without history, the fresh bonus by policy.
    assert art.base.weights == MixWeights(audio=0.45, collab=0.45, popularity=0.1, fresh=0.05)
    # hybrid-sasrec was not evaluated: the sequence mix is the built-in one, said so.
    assert art.sequence.weights == builtin().sequence.weights
    assert "carried over" in art.sequence.provenance.adjustment


def test_served_keeps_a_chosen_popularity_above_the_floor() -> None:
    from models.recsys.weights_export import POLICIES

    chosen = MixWeights(audio=0.3, collab=0.3, popularity=0.4)
    w, _ = served(chosen, POLICIES["base"])
    assert (w.audio, w.collab, w.popularity, w.fresh) == (0.3, 0.3, 0.4, 0.05)


def test_report_without_hybrid_runs_is_refused() -> None:
    with pytest.raises(ValueError):
        artifact_from_report(_report([], "sasrec"), version="v")


def test_an_artifact_without_taste_parameters_serves_the_old_constants() -> None:
    """Artifacts written before the taste parameters joined them still load, with the
    values that were code constants then; the built-in one names them itself."""
    from models.fusion_weights import BUILTIN_DIR, FusionArtifact, Taste, builtin

    old = FusionArtifact.model_validate_json(
        (BUILTIN_DIR / "fusion-20261122074629" / "weights.json").read_text()
    )
    assert "taste" not in (BUILTIN_DIR / "fusion-20261122074629" / "weights.json").read_text()
    assert old.taste == Taste(
        recency_decay=0.85, like_boost=2.0, skip_weight=0.5, fresh_window_ms=86_400_000
    )
    assert '"taste"' in (BUILTIN_DIR / builtin().version / "weights.json").read_text()
    assert DEFAULT_WEIGHTS.recency_decay == builtin().taste.recency_decay


def test_fusion_weights_wrap_the_artifact_models() -> None:
    """The ranking's weights are the artifact's MixWeights and Taste, wrapped, not copied:
    a field override validates like the artifact would, and equal weights hash alike."""
    import pytest

    from models.fusion_weights import builtin

    w = FusionWeights(audio=0.6, recency_decay=0.5)
    assert w.mix_weights.audio == w.audio == 0.6
    assert w.collab == builtin().base.weights.collab  # the rest: the built-in mix
    assert w.taste.recency_decay == 0.5 and w.like_boost == builtin().taste.like_boost
    assert w == FusionWeights(recency_decay=0.5, audio=0.6) and hash(w) == hash(
        FusionWeights(recency_decay=0.5, audio=0.6)
    )
    assert w.replace(audio=0.1).audio == 0.1 and w.audio == 0.6
    with pytest.raises(TypeError):
        FusionWeights(loudness=1.0)
    with pytest.raises(ValueError):  # the artifact's own bounds
        FusionWeights(audio=-1.0)
    with pytest.raises(AttributeError):
        w.audio = 0.2  # type: ignore[misc]
