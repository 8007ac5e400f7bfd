"""The offline side of finished replays, computed again: ``python -m infra.replay.rescore
live-0.json ...`` (each report rewritten in place, with its Markdown beside it).

A replay's live side (the lists the running system emitted) is fixed once it ran; its
offline counterpart is a function of the same events and artifacts, so when the counterpart
is corrected it can be recomputed without replaying. The report's live per-event figures are
kept as they are, the offline figures and the ratios are replaced, and
``offline_rescored`` says at which commit. The fusion-weights version must be the one the
live lists name, or the report is refused.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from infra.cli_common import cli_settings
from infra.replay.plan import plan_30music
from infra.replay.report import markdown
from infra.replay.run import ratios_of, served_counterpart
from models.fusion_weights import WeightsSource, git_commit
from models.recsys.counterpart import KIND_COUNTERPARTS, VARIANTS, ArtifactRec
from models.recsys.prequential import Scored, summarize_over
from schemas.events import ListKind
from schemas.settings import Settings

log = logging.getLogger(__name__)


def rescore(report: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """``report`` with its offline figures and ratios computed again."""
    opts = report["options"]
    fusion, version = WeightsSource(dir=settings.fusion_weights_dir).current()
    if version != report["artifacts"]["fusion_weights"]:
        raise SystemExit(
            f"{report['slice']}: the lists name {report['artifacts']['fusion_weights']}, "
            f"the weights in force are {version}: replay it instead"
        )
    plan = plan_30music(Path(opts["path"]), listeners=int(opts["listeners"]), seed=opts["seed"])
    sequence = ArtifactRec(Path(report["artifacts"]["sequence_model_path"]))
    offline = served_counterpart(
        plan, settings, fusion=fusion, sequence=sequence, seed=opts["seed"]
    )
    per_event = report["per_event"]
    live = {
        kind: _scored(per_event[f"live-{kind}"]) for kind in ListKind if f"live-{kind}" in per_event
    }
    new = live.get(ListKind.NEW) or _scored(per_event["live"])
    out = dict(report)
    out["offline"] = {
        name: {m: f.model_dump() for m, f in sc.summary.items()} for name, sc in offline.items()
    }
    plain = [n for n, v in VARIANTS.items() if not v.familiar]
    out["ratio"] = ratios_of(new, offline, plain, opts["seed"])
    for kind, sc in live.items():
        out["kinds"][str(kind)]["ratio"] = ratios_of(
            sc, offline, KIND_COUNTERPARTS[kind], opts["seed"]
        )
    out["per_event"] = {
        **{k: v for k, v in per_event.items() if k.startswith("live")},
        **{name: {"listeners": sc.listeners, **sc.per_event} for name, sc in offline.items()},
    }
    out["offline_rescored"] = {"commit": git_commit(), "at": time.time()}
    return out


def _scored(entry: dict[str, Any]) -> Scored:
    listeners = list(entry["listeners"])
    per_event = {k: list(v) for k, v in entry.items() if k != "listeners"}
    return Scored(
        listeners=listeners, per_event=per_event, summary=summarize_over(per_event, listeners)
    )


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    settings = cli_settings()
    for name in sys.argv[1:]:
        path = Path(name)
        report = rescore(json.loads(path.read_text()), settings)
        path.write_text(json.dumps(report, indent=2) + "\n")
        path.with_suffix(".md").write_text(markdown(report))
        log.info("rescored %s", path)


if __name__ == "__main__":
    main()
