"""Offline evaluation harness: train models on a split, score the test cases, summarise.

``run_eval`` (the engine of ``resonate eval``, see ``report.py``) trains each model once per
seed, ranks all items for every test case and reports mean metrics with 95% CIs (over users:
30Music cases are first averaged within each user). With several seeds each user's metric is
first averaged over seeds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from models.recsys.baselines import ItemKNN, PopRank, RandomRec, Recommender
from models.recsys.contentknn import ContentKNN
from models.recsys.data import (
    Dataset,
    drop_skips,
    load_30music,
    load_events,
    load_lastfm,
    skips_as_plays,
)
from models.recsys.dmmhyrec import DMMHyRecConfig
from models.recsys.gru4rec import GRU4RecConfig
from models.recsys.hetrec import load_hetrec_tags
from models.recsys.hybrid import HybridRec
from models.recsys.metrics import full_ranking, sampled_ranking, summarize_all
from models.recsys.sasrec import SASRecConfig
from models.recsys.train import (
    BPRRec,
    DMMHyRecRec,
    GRU4RecRec,
    SASRecRec,
    TrainConfig,
    score_cases,
)

MODELS: tuple[str, ...] = (
    "random",
    "pop",
    "itemknn",
    "bpr",
    "sasrec",
    "gru4rec",
    "contentknn",
    "dmmhyrec",
    "dmmhyrec-noseq",
    "dmmhyrec-noattn",
    "dmmhyrec-nocontent",
    "dmmhyrec-ce",
    "hybrid",
    "hybrid-sasrec",
)
HYBRIDS: dict[str, tuple[str, ...]] = {
    "hybrid": ("pop", "itemknn", "contentknn"),
    "hybrid-sasrec": ("pop", "itemknn", "contentknn", "sasrec"),
}
"""The fusion agent's signals: popularity, co-plays (ItemKNN), content KNN, sequence model."""
DATASETS: tuple[str, ...] = (
    "lastfm",
    "30music",
    "events",
    "events-dropskips",
    "events-skipsasplays",
    "hetrec",
    "hetrec-leakfree",
)
DMM_VARIANTS: dict[str, DMMHyRecConfig] = {
    "dmmhyrec": DMMHyRecConfig(),
    "dmmhyrec-noseq": DMMHyRecConfig(use_seq=False),
    "dmmhyrec-noattn": DMMHyRecConfig(use_attn=False),
    "dmmhyrec-nocontent": DMMHyRecConfig(use_content=False),
    "dmmhyrec-ce": DMMHyRecConfig(loss="ce"),
}
TABLE_COLUMNS: tuple[str, ...] = (
    "Recall@10",
    "Recall@20",
    "NDCG@10",
    "NDCG@20",
    "MAP@20",
    "HitRate@20",
    "MRR@20",
)


def load(dataset: str, path: Path) -> Dataset:
    """Load a dataset of ``DATASETS`` from ``path``: ``events`` is a JSON-lines interactions
    log (skip-aware), ``events-dropskips`` / ``events-skipsasplays`` its skip-unaware views."""
    if dataset == "lastfm":
        return load_lastfm(path)
    if dataset == "30music":
        return load_30music(path)
    if dataset == "events":
        return load_events(path, view="typed")
    if dataset == "events-dropskips":
        return drop_skips(load_events(path, view="typed"))
    if dataset == "events-skipsasplays":
        return skips_as_plays(load_events(path, view="typed"))
    if dataset in ("hetrec", "hetrec-leakfree"):
        return load_hetrec_tags(path, leak_free=dataset == "hetrec-leakfree", time_rule="first_row")
    raise ValueError(f"unknown dataset {dataset!r}")


def make_model(
    name: str,
    seed: int,
    quick: bool,
    dataset: str,
    max_seconds: float = 0.0,
    lr: float = 0.0,
    batch_size: int = 0,
) -> Recommender:
    """A fresh, untrained recommender by name; ``max_seconds > 0`` caps the wall-clock training
    budget of the neural models (early stopping keeps the best validation weights so far);
    ``lr > 0`` / ``batch_size > 0`` override their defaults (in a hybrid: its components')."""
    model = _make_model(name, seed, quick, dataset)
    parts = [m for _, m in model.components] if isinstance(model, HybridRec) else [model]
    for part in parts:
        tc = getattr(part, "train_config", None)
        if isinstance(tc, TrainConfig):
            tc = replace(tc, max_seconds=max_seconds) if max_seconds > 0 else tc
            tc = replace(tc, lr=lr) if lr > 0 else tc
            tc = replace(tc, batch_size=batch_size) if batch_size > 0 else tc
            part.train_config = tc  # type: ignore[attr-defined]
    return model


@dataclass(frozen=True, kw_only=True)
class TrainDefaults:
    """One neural model's optimisation defaults in the harness."""

    full: TrainConfig
    quick: TrainConfig
    """``--quick`` (CI): few epochs, short patience, a wall-clock cap."""
    small_batch_size: int | None = None
    """Batch size on event logs (``events*``: hundreds of users, one window each, so large
    batches give ~2 optimiser steps per epoch); None = unchanged."""

    def config(self, *, quick: bool, dataset: str, seed: int) -> TrainConfig:
        """The run's ``TrainConfig``."""
        tc = self.quick if quick else self.full
        if self.small_batch_size is not None and dataset.startswith("events"):
            tc = replace(tc, batch_size=self.small_batch_size)
        return replace(tc, seed=seed)


_QUICK = TrainConfig(epochs=30, patience=3, eval_every=2)
TRAIN_DEFAULTS: dict[str, TrainDefaults] = {
    "sasrec": TrainDefaults(
        full=TrainConfig(epochs=300, batch_size=256, patience=10, eval_every=2),
        quick=replace(_QUICK, batch_size=256, max_seconds=40),
        small_batch_size=32,
    ),
    # Without SASRec's LayerNorm the GRU needs many more steps: small batches, lr 3e-3
    # (batch 256 / lr 1e-3 stayed at popularity level on the synthetic log).
    "gru4rec": TrainDefaults(
        full=TrainConfig(epochs=300, batch_size=64, lr=3e-3, patience=10, eval_every=2),
        quick=replace(_QUICK, batch_size=64, lr=3e-3, max_seconds=40),
        small_batch_size=32,
    ),
    # lr 3e-3 / batch 256 chosen on Last.fm validation NDCG@10 (0.041 after 4 epochs vs
    # 0.026 with lr 1e-3 / batch 512); one Bi-LSTM epoch costs ~25 CPU-seconds there.
    "dmmhyrec": TrainDefaults(
        full=TrainConfig(epochs=200, batch_size=256, lr=3e-3, patience=3, eval_every=2),
        quick=replace(_QUICK, batch_size=256, lr=3e-3, max_seconds=45),
        small_batch_size=64,
    ),
    "bpr": TrainDefaults(
        full=TrainConfig(batch_size=1024, lr=5e-3, patience=10, eval_every=2),
        quick=replace(_QUICK, batch_size=1024, lr=5e-3, max_seconds=20),
    ),
}
"""Per-model training defaults (every DMM-HyRec variant uses ``dmmhyrec``'s)."""


def _make_model(name: str, seed: int, quick: bool, dataset: str) -> Recommender:
    if name == "random":
        return RandomRec(seed)
    if name == "pop":
        return PopRank()
    if name == "itemknn":
        return ItemKNN()
    if name == "contentknn":
        return ContentKNN()
    if name in HYBRIDS:
        return HybridRec([(c, _make_model(c, seed, quick, dataset)) for c in HYBRIDS[name]])
    key = "dmmhyrec" if name in DMM_VARIANTS else name
    if key not in TRAIN_DEFAULTS:
        raise ValueError(f"unknown model {name!r}; choose from {MODELS}")
    tc = TRAIN_DEFAULTS[key].config(quick=quick, dataset=dataset, seed=seed)
    if name == "sasrec":
        return SASRecRec(SASRecConfig(), tc)
    if name == "gru4rec":
        return GRU4RecRec(GRU4RecConfig(), tc)
    if name == "bpr":
        return BPRRec(train_config=tc)
    return DMMHyRecRec(DMM_VARIANTS[name], tc)


def evaluate_model(
    model: Recommender, data: Dataset, seed: int, sampled: int = 0
) -> dict[str, np.ndarray]:
    """Per-case test metrics of a fitted model: full ranking, or with ``sampled > 0`` the
    target ranked among that many uniformly sampled unseen items (S3-Rec's protocol)."""
    hist = [c.history for c in data.test]
    users = [c.user for c in data.test]
    types = [c.history_types or [] for c in data.test] if data.has_types else None
    per_case: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(hist), 1024):
        sl = slice(start, start + 1024)
        scores = score_cases(model, hist[sl], users[sl], types[sl] if types else None)
        targets = [c.target for c in data.test[sl]]
        res = (
            sampled_ranking(scores, targets, hist[sl], sampled, seed=seed)
            if sampled
            else full_ranking(scores, targets, hist[sl], data.exclude_history, seed=seed)
        )
        for k, v in res.items():
            per_case.setdefault(k, []).append(v)
    return {k: np.concatenate(v) for k, v in per_case.items()}


def _fit_and_score(
    model: Recommender, data: Dataset, seed: int, sampled: int = 0
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Fit one model, score the test cases; per-case metrics and the run's summary."""
    t0 = time.monotonic()
    model.fit(data)
    fit_s = time.monotonic() - t0
    per_case = evaluate_model(model, data, seed, sampled)
    run: dict[str, Any] = {
        "seed": seed,
        "fit_seconds": round(fit_s, 2),
        "eval_seconds": round(time.monotonic() - t0 - fit_s, 2),
        "best_valid_ndcg10": float(getattr(model, "best_valid", float("nan"))),
        "epochs": int(getattr(model, "epochs_run", 0)),
        **{k: float(v.mean()) for k, v in per_case.items()},
    }
    if isinstance(model, HybridRec):
        # The validation choice by fusion signal (resonate eval --fusion-weights-out).
        run["weights"] = model.mix_weights().model_dump()
    return per_case, run


def run_eval(
    dataset: str,
    path: Path,
    models: list[str],
    seeds: list[int],
    quick: bool,
    out: Path | None = None,
    max_seconds: float = 0.0,
    lr: float = 0.0,
    batch_size: int = 0,
    cache_dir: Path | None = None,
    progress: Callable[[str, int], None] | None = None,
    sampled: int = 0,
    cases_out: dict[str, tuple[dict[str, np.ndarray], list[int]]] | None = None,
) -> dict:  # type: ignore[type-arg]
    """Train and evaluate ``models`` on ``dataset``; return (and write to ``out``) JSON-able
    results: per model the mean, 95% CI and n of every metric plus per-seed means/timings.

    With ``cache_dir`` each (model, seed) run's per-case metrics are stored there and reused
    by later calls with the same arguments (delete the directory after changing the code).
    ``progress(model, seed)`` is called after each run. ``sampled > 0`` switches to the
    sampled protocol. ``cases_out`` receives each model's seed-averaged per-case metrics and
    the case users (for pooling several datasets over users)."""
    data = load(dataset, path)
    users = [c.user for c in data.test]
    results: dict = {  # type: ignore[type-arg]
        "dataset": dataset,
        "path": str(path),
        "n_items": data.n_items,
        "n_users": data.n_users,
        "n_test_cases": len(data.test),
        "exclude_history": data.exclude_history,
        "seeds": seeds,
        "quick": quick,
        "protocol": f"sampled-{sampled}" if sampled else "full",
        "models": {},
    }
    for name in models:
        per_seed: list[dict[str, np.ndarray]] = []
        info: list[dict[str, Any]] = []
        for seed in seeds:
            tag = f"{dataset}_{path.stem}_{name}_s{seed}{'_quick' if quick else ''}"
            # The wall-clock cap is a budget, not part of a run's identity: it is kept in the
            # run's record instead, so runs with different caps combine in one table.
            tag += f"_lr{lr:g}_b{batch_size}" + (f"_n{sampled}" if sampled else "")
            cached = cache_dir / f"{tag}.npz" if cache_dir is not None else None
            if cached is not None and cached.exists():
                # One (model, seed) per process can run in parallel; a final run combines them.
                with np.load(cached) as z:
                    per_case = {k: z[k] for k in z.files}
                run = json.loads(cached.with_suffix(".json").read_text())
            else:
                per_case, run = _fit_and_score(
                    make_model(name, seed, quick, dataset, max_seconds, lr, batch_size),
                    data,
                    seed,
                    sampled,
                )
                run["max_seconds"] = max_seconds
                if cached is not None:
                    cached.parent.mkdir(parents=True, exist_ok=True)
                    np.savez(cached, **per_case)
                    cached.with_suffix(".json").write_text(json.dumps(run))
            per_seed.append(per_case)
            info.append(run)
            if progress is not None:
                progress(name, seed)
        mean_case = {k: np.mean([p[k] for p in per_seed], axis=0) for k in per_seed[0]}
        summ = summarize_all(mean_case, users)
        if cases_out is not None:
            cases_out[name] = (mean_case, users)
        results["models"][name] = {
            "metrics": {k: {"mean": s.mean, "ci95": s.ci95, "n": s.n} for k, s in summ.items()},
            "runs": info,
        }
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2))
    return results
