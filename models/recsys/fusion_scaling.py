"""How the shared fusion rule changes the offline hybrids: old min-max vs max-scaling.

Before ``models/fusion_rule.py`` the offline hybrids min-max scaled each component's row
(SASRec's raw logits included) while the agent scaled by the maximum and fed SASRec as
``exp(logit - max)``. This fits each hybrid's components once per 30Music slice (quick
training, no wall-clock cap, so both rules see the same models), re-chooses the weights on
validation under each rule and reports validation NDCG@10 and the test metrics pooled over
users, with paired differences against the old rule. ``--temperatures`` also tries a softened
sequence signal ``exp((logit - max) / T)``.

    python -m models.recsys.fusion_scaling --out docs/results/fusion_scaling.json
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.fusion_rule import relative_probability, scale_by_max
from models.recsys.data import Dataset
from models.recsys.evaluate import evaluate_model, load, make_model
from models.recsys.hybrid import HybridRec, signal_of
from models.recsys.metrics import summarize_all
from models.recsys.train import score_cases

log = logging.getLogger(__name__)
METRICS = ("Recall@10", "Recall@20", "NDCG@10", "NDCG@20")


def _minmax(x: np.ndarray) -> np.ndarray:
    lo = x.min(axis=1, keepdims=True)
    span = x.max(axis=1, keepdims=True) - lo
    out: np.ndarray = (x - lo) / np.where(span > 0, span, 1.0)
    return out


class _Rule(HybridRec):
    """A hybrid whose per-component transform is ``rule``: ``minmax`` or ``T<temperature>``."""

    rule = "T1"

    def _scores(
        self,
        histories: Sequence[Sequence[int]],
        users: Sequence[int],
        types: list[list[int]] | None = None,
    ) -> list[np.ndarray]:
        hist = [list(h) for h in histories]
        out = []
        for name, m in self.components:
            raw = score_cases(m, hist, list(users), types)
            if self.rule == "minmax":
                out.append(_minmax(raw))
            elif signal_of(name) == "sequence":
                out.append(relative_probability(raw) ** (1.0 / float(self.rule[1:])))
            else:
                out.append(scale_by_max(raw))
        return out


class _Fitted:
    """A component fitted once, shared by the rules."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.uses_types = bool(getattr(model, "uses_types", False))

    def fit(self, train: Dataset) -> None:
        """Already fitted."""

    def score(self, histories: Any, users: Any, types: Any = None) -> np.ndarray:
        return score_cases(self.model, histories, users, types)


def compare(files: Sequence[Path], model: str, rules: Sequence[str]) -> dict[str, Any]:
    """Per rule: validation NDCG@10 and weights per slice, pooled test metrics, paired diffs."""
    per_rule: dict[str, dict[str, list[np.ndarray]]] = {r: {} for r in rules}
    groups: list[np.ndarray] = []
    info: dict[str, list[dict[str, Any]]] = {r: [] for r in rules}
    offset = 0
    for f in files:
        data = load("30music", f)
        base = make_model(model, 0, True, "30music")
        assert isinstance(base, HybridRec)
        for _, m in base.components:
            if hasattr(m, "train_config"):
                m.train_config = replace(m.train_config, max_seconds=1e9)
            m.fit(data)
        users = np.asarray([c.user for c in data.test])
        groups.append(users + offset)
        offset += int(users.max()) + 1
        for r in rules:
            hyb = _Rule([(n, _Fitted(m)) for n, m in base.components])  # type: ignore[misc]
            hyb.rule = r
            hyb.fit(data)
            res = evaluate_model(hyb, data, 0)
            for k in METRICS:
                per_rule[r].setdefault(k, []).append(res[k])
            info[r].append(
                {
                    "slice": f.name,
                    "weights": hyb.mix_weights().model_dump(),
                    "valid_ndcg10": hyb.best_valid,
                }
            )
            log.info("%s %s %s valid %.4f", f.name, model, r, hyb.best_valid)
    g = list(np.concatenate(groups))
    cases = {r: {k: np.concatenate(v) for k, v in per_rule[r].items()} for r in rules}
    out: dict[str, Any] = {}
    for r in rules:
        test = summarize_all(cases[r], groups=g)
        diff = summarize_all({k: cases[r][k] - cases[rules[0]][k] for k in METRICS}, groups=g)
        out[r] = {
            "runs": info[r],
            "valid_ndcg10_mean": float(np.mean([i["valid_ndcg10"] for i in info[r]])),
            "test": {
                k: {"mean": test[k].mean, "ci95": test[k].ci95, "n": test[k].n} for k in METRICS
            },
            f"minus_{rules[0]}": {k: {"mean": diff[k].mean, "ci95": diff[k].ci95} for k in METRICS},
        }
    return out


def main(argv: list[str] | None = None) -> None:
    """CLI: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--path", type=Path, default=Path("../shared/data/30music"))
    parser.add_argument("--models", default="hybrid,hybrid-sasrec")
    parser.add_argument("--temperatures", default="1")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    torch.set_num_threads(1)
    files = sorted(args.path.glob("*.txt")) if args.path.is_dir() else [args.path]
    rules = ["minmax", *(f"T{t}" for t in args.temperatures.split(","))]
    result = {m: compare(files, m, rules) for m in args.models.split(",")}
    args.out.write_text(json.dumps(result, indent=2))
    for m, per in result.items():
        for r, v in per.items():
            d = v[f"minus_{rules[0]}"]
            print(
                f"{m:14s} {r:7s} valid {v['valid_ndcg10_mean']:.4f}  "
                + "  ".join(
                    f"{k} {v['test'][k]['mean']:.4f} ({d[k]['mean']:+.4f}±{d[k]['ci95']:.4f})"
                    for k in METRICS
                )
            )


if __name__ == "__main__":
    main()
