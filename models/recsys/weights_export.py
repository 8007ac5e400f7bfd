"""Publish the fusion weights that ``resonate eval`` chose as a versioned artifact.

The hybrid models record their validation-chosen weights in each run (``runs[*].weights``);
``artifact_from_report`` averages them over the benchmarks and seeds of one ``evaluate`` report
(each run's weights lie on the simplex, so their mean does too), applies the serving policy and
names the provenance. ``hybrid`` gives the ``base`` mix, ``hybrid-sasrec`` the ``sequence``
mix; a mix that the report has no runs of is carried over from the built-in artifact.

Serving policy (``ServingPolicy``): the offline test users all have a history, so validation
never asks for popularity, yet it is the only signal for a new listener: a mix whose
popularity weight is below ``popularity_floor`` is served as ``(1 - floor) * chosen`` plus
``floor`` on popularity; ``fresh`` (no upload times offline) is set by policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from models.fusion_rule import SIGNALS, MixWeights
from models.fusion_weights import (
    FusionArtifact,
    Mix,
    Provenance,
    builtin,
    git_commit,
    new_version,
    publish,
)

MIX_MODELS: dict[str, str] = {"base": "hybrid", "sequence": "hybrid-sasrec"}
"""Artifact mix -> the offline model whose weight search fits it."""


@dataclass(frozen=True, kw_only=True)
class ServingPolicy:
    """What serving adds to a validation choice (see the module docstring)."""

    popularity_floor: float
    fresh: float = 0.05


POLICIES: dict[str, ServingPolicy] = {
    "base": ServingPolicy(popularity_floor=0.1),
    "sequence": ServingPolicy(popularity_floor=0.05),
}


def served(chosen: MixWeights, policy: ServingPolicy) -> tuple[MixWeights, str]:
    """The served mix for a validation choice, and the adjustment as text."""
    w = chosen.model_dump()
    notes = []
    if chosen.popularity < policy.popularity_floor:
        f = policy.popularity_floor
        w = {s: round((1 - f) * v, 6) for s, v in w.items()}
        w["popularity"] = round(w["popularity"] + f, 6)
        notes.append(f"(1 - {f:g}) x chosen + popularity {f:g} (listeners without history)")
    w["fresh"] = policy.fresh
    notes.append(f"fresh-upload bonus {policy.fresh:g} (no upload times offline)")
    return MixWeights(**w), "; ".join(notes)


def _runs(report: dict[str, Any], model: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for bench in report["benchmarks"]:
        entry = bench["models"].get(model)
        for run in entry["runs"] if entry else []:
            if "weights" not in run:
                raise ValueError(
                    f"{model} run of {bench['path']} has no recorded weights "
                    "(a --cache-dir from before weights were recorded? clear it)"
                )
            out.append((Path(bench["path"]).name, run))
    return out


def _mix(report: dict[str, Any], key: str) -> Mix | None:
    model = MIX_MODELS[key]
    runs = _runs(report, model)
    if not runs:
        return None
    chosen = MixWeights(
        **{
            # A signal the runs did not mix (familiar: added after them) counts 0.
            s: round(sum(r["weights"].get(s, 0.0) for _, r in runs) / len(runs), 6)
            for s in SIGNALS
        }
    )
    weights, adjustment = served(chosen, POLICIES[key])
    value = sum(r["best_valid_ndcg10"] for _, r in runs) / len(runs)
    prov = Provenance(
        dataset=report["benchmarks"][0]["dataset"],
        sources=sorted({name for name, _ in runs}),
        model=model,
        value=round(value, 6),
        seeds=sorted({int(r["seed"]) for _, r in runs}),
        chosen=chosen,
        runs=[
            {
                "benchmark": name,
                "seed": r["seed"],
                "weights": r["weights"],
                "valid_ndcg10": round(r["best_valid_ndcg10"], 6),
            }
            for name, r in runs
        ],
        adjustment=adjustment,
    )
    return Mix(weights=weights, provenance=prov)


def artifact_from_report(
    report: dict[str, Any], *, version: str, now: datetime | None = None, commit: str = ""
) -> FusionArtifact:
    """The artifact for one ``evaluate`` report (raises if it has no hybrid runs)."""
    base, seq = _mix(report, "base"), _mix(report, "sequence")
    if base is None and seq is None:
        raise ValueError(f"no {' or '.join(MIX_MODELS.values())} runs to take weights from")
    fallback = builtin()

    def carried(mix: Mix) -> Mix:
        note = f"carried over from the built-in {fallback.version} (not evaluated in this run)"
        return Mix(
            weights=mix.weights, provenance=mix.provenance.model_copy(update={"adjustment": note})
        )

    return FusionArtifact(
        version=version,
        created_at=now or datetime.now(UTC),
        git_commit=commit or git_commit(),
        base=base or carried(fallback.base),
        sequence=seq or carried(fallback.sequence),
    )


def publish_from_report(report: dict[str, Any], root: Path) -> Path:
    """Write the report's weights as a new version under ``root``; returns its folder."""
    now = datetime.now(UTC)
    art = artifact_from_report(report, version=new_version(root, now), now=now)
    return publish(root, art)
