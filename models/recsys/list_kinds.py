"""How a list that may bring favourites back should be made: measured offline, before serving.

``python -m models.recsys.list_kinds --out docs/results/list_kinds.json`` scores, on each
30Music slice's validation cases (each listener's last training event) and test cases (the
replay's scored events), with the served mix and the served SASRec artifact (as
:mod:`models.recsys.counterpart`, no content signal: 30Music tracks have no audio live):

* ``new`` -- heard tracks excluded (today's list);
* ``offline`` -- nothing excluded (the tables' protocol; every signal may score a replay);
* ``mix c<C> w<W>`` -- the served `mix` rule: heard tracks excluded, the favourites of the last
  ``seq_len`` events back after a cool-down of ``C`` events, scored by the familiar signal
  alone with weight ``W`` (``models.fusion_rule.familiarity``);
* ``share<S> c<C>`` -- the alternative design: one list whose first ``S`` x 20 places are the
  most familiar tracks, the rest the `new` list;
* ``mixseq c<C> w<W>`` -- as ``mix``, but a favourite also keeps what the other signals say of
  it, the sequence model's score of a replay included (the served model returns unheard
  tracks only, so this is what it would take to serve, not what is served).

HR@20 per listener, then the mean over listeners (``models.recsys.prequential``). The cool-down
and weight are chosen on validation; test is reported beside it. ``artist`` in each split:
the `new` and `mix` lists for each weight of the artist signal (:func:`artist_grid`), with the
sequence mix and with the base mix.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from models.fusion_weights import Taste, WeightsSource
from models.recsys.counterpart import LIST_LEN, ArtifactRec, familiar_scores, served_hybrid
from models.recsys.data import Dataset, load_30music
from models.recsys.export_user import latest_artifact
from models.recsys.hybrid import signal_of
from models.recsys.metrics import mask_history, top_k
from models.recsys.prequential import score

log = logging.getLogger(__name__)

COOLDOWNS = (0, 1, 3, 5)
WEIGHTS = (0.5, 1.0, 2.0, 4.0, 8.0)
SHARES = (0.25, 0.5)
WINDOW = 50  # the agent's seq_len


def _hr20(data: Dataset, cases: list[Any], lists: list[list[int]]) -> float:
    pairs = [
        (data.user_ids[c.user], [data.item_ids[i] for i in row], data.item_ids[c.target])
        for c, row in zip(cases, lists, strict=True)
    ]
    return round(score(pairs).summary["HR@20"].mean, 4)


def _top(scores: np.ndarray) -> list[list[int]]:
    rows = top_k(scores, LIST_LEN, np.random.default_rng(0))
    return [[int(i) for i in r if np.isfinite(scores[b, int(i)])] for b, r in enumerate(rows)]


def grid(data: Dataset, artifact: Path, cases: list[Any], taste: Taste) -> dict[str, float]:
    """HR@20 of every rule on ``cases``."""
    fusion, _ = WeightsSource(dir=None).current()
    hybrid = served_hybrid(data, fusion.sequence.weights, ArtifactRec(artifact), window=WINDOW)
    hist = [c.history for c in cases]
    parts = hybrid._scores(hist, [c.user for c in cases])
    keep = tuple(
        0.0 if signal_of(n) == "audio" else w
        for (n, _), w in zip(hybrid.components, hybrid.weights, strict=True)
    )
    base = hybrid._mixed(parts, keep)
    new = mask_history(base, hist)
    out = {"new": _hr20(data, cases, _top(new)), "offline": _hr20(data, cases, _top(base))}
    new_top = _top(new)
    for c in COOLDOWNS:
        fam = familiar_scores(
            [h[-WINDOW:] for h in hist],
            new.shape[1],
            taste=taste.model_copy(update={"familiar_cooldown": c}),
        )
        for w in WEIGHTS:
            out[f"mix c{c} w{w}"] = _hr20(data, cases, _top(np.where(fam > 0, w * fam, new)))
            mixseq = np.where(fam > 0, base + w * fam, new)
            out[f"mixseq c{c} w{w}"] = _hr20(data, cases, _top(mixseq))
        for s in SHARES:
            n_fam = int(LIST_LEN * s)
            lists = []
            for b in range(len(cases)):
                favs = [int(i) for i in np.argsort(-fam[b])[:n_fam] if fam[b, i] > 0]
                lists.append(
                    favs + [i for i in new_top[b] if i not in favs][: LIST_LEN - len(favs)]
                )
            out[f"share{s} c{c}"] = _hr20(data, cases, lists)
    return out


ARTIST_WEIGHTS = (0.0, 0.3, 0.5, 1.0, 2.0)


def artist_grid(
    data: Dataset, artifact: Path | None, cases: list[Any], taste: Taste
) -> dict[str, float]:
    """HR@20 of the `new` and `mix` lists for each weight of the ``artist`` signal, the other
    weights as served (audio dropped); with ``artifact`` the sequence mix, without it the
    base mix (listeners the sequence model knows nothing of)."""
    fusion, _ = WeightsSource(dir=None).current()
    served = fusion.sequence if artifact is not None else fusion.base
    seq = ArtifactRec(artifact) if artifact is not None else None
    hybrid = served_hybrid(data, served.weights, seq, window=WINDOW)
    hist = [c.history for c in cases]
    parts = hybrid._scores(hist, [c.user for c in cases])
    fam = familiar_scores([h[-WINDOW:] for h in hist], parts[0].shape[1], taste=taste)
    out = {}
    for wa in ARTIST_WEIGHTS:
        keep = tuple(
            0.0 if signal_of(n) == "audio" else (wa if signal_of(n) == "artist" else w)
            for (n, _), w in zip(hybrid.components, hybrid.weights, strict=True)
        )
        new = mask_history(hybrid._mixed(parts, keep), hist)
        mix = np.where(fam > 0, taste.familiar_weight * fam, new)
        out[f"new a{wa}"] = _hr20(data, cases, _top(new))
        out[f"mix a{wa}"] = _hr20(data, cases, _top(mix))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("../shared/data/30music"))
    p.add_argument("--models", type=Path, default=Path("run/replay/user-model"))
    p.add_argument("--out", type=Path, default=Path("docs/results/list_kinds.json"))
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO)
    taste = WeightsSource(dir=None).current()[0].taste
    report: dict[str, Any] = {"window": WINDOW, "slices": {}}
    for path in sorted(args.data.glob("*.txt")):
        artifact = latest_artifact(args.models / path.stem)
        if artifact is None:
            raise SystemExit(
                f"no SASRec artifact under {args.models / path.stem}: resonate "
                "replay trains one per slice (or models.recsys.export_user)"
            )
        data = load_30music(path)
        report["slices"][path.name] = {
            split: {
                "cases": len(cases),
                "hr20": grid(data, artifact, cases, taste),
                "artist": {
                    "sequence": artist_grid(data, artifact, cases, taste),
                    "base": artist_grid(data, None, cases, taste),
                },
            }
            for split, cases in (("valid", data.valid), ("test", data.test))
        }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    log.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
