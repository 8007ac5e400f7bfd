"""Train a sequence model and write a servable artifact (``resonate train``).

An artifact is a folder ``<out>/<version>/`` with

* ``model.pt`` -- TorchScript: left-padded item-index sequences ``[B, L]`` int64 (0 = padding,
  dataset item ``j`` is index ``j + 1``) -> next-item scores ``[B, n_items]`` (column ``j`` =
  dataset item ``j``);
* ``vocab.json`` -- the list of track ids, position ``j`` = dataset item ``j``;
* ``card.json`` -- ``version`` (``sasrec-<yyyymmddHHMMSS>``), ``L``, ``n_items``, ``dataset``,
  validation/test metrics, ``created_at``.

A version is first written to a hidden temporary folder and then renamed into place, so a
server polling ``<out>`` (``serving.user_model``) never sees a half-written artifact.

``--dataset events`` reads a JSON-lines log in the public ``interactions`` format through
``models.recsys.data.load_events(view="positives")``: per user, the chronological sequence of
positive events (play, like); skips are left out.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from models.recsys.data import Dataset, load_30music, load_events, load_lastfm
from models.recsys.dmmhyrec import DMMHyRec, DMMHyRecConfig
from models.recsys.sasrec import SASRec, SASRecConfig
from models.recsys.train import DMMHyRecRec, SASRecRec, TrainConfig
from models.versions import newest_version

log = logging.getLogger(__name__)

DATASETS = ("lastfm", "30music", "events")
MODELS = ("sasrec", "dmmhyrec")
MODEL_FILE, VOCAB_FILE, CARD_FILE = "model.pt", "vocab.json", "card.json"


def load_dataset(name: str, path: Path) -> Dataset:
    """One of the supported logs (see ``DATASETS``)."""
    if name == "lastfm":
        return load_lastfm(path)
    if name == "30music":
        return load_30music(path)
    if name == "events":
        # The positives view, not the harness's typed one: the served model is fed the
        # listener's positive history, so it is trained on exactly that.
        return load_events(path, view="positives")
    raise ValueError(f"unknown dataset {name!r}; choose from {DATASETS}")


SequenceModel = SASRec | DMMHyRec
"""The exportable user encoders: both score every item after an item-index history."""


class NextItemScores(nn.Module):
    """What is exported: ``[B, L]`` left-padded item indices -> ``[B, n_items]`` scores.

    SASRec reads left-padded histories itself; DMM-HyRec's packed Bi-LSTM wants them
    right-padded, so its rows are rotated first (a gather the tracer records)."""

    def __init__(self, model: SequenceModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        if isinstance(self.model, SASRec):
            return self.model.last_logits(seq)
        length = seq.shape[1]
        n = (seq > 0).sum(1)  # [B]
        idx = (torch.arange(length)[None] + (length - n)[:, None]) % length  # [B, L]
        return self.model.scores(seq.gather(1, idx))


def to_torchscript(model: SequenceModel) -> torch.jit.ScriptModule:
    """Trace the eval-mode model on a padded and a full example of length ``max_len``."""
    length = model.config.max_len
    n = max(1, min(model.n_items, length))
    example = torch.zeros(2, length, dtype=torch.int64)
    example[0, -1] = 1
    example[1, length - n :] = torch.arange(1, n + 1)
    wrapper = NextItemScores(model).eval()
    # The tracer warns about shape checks inside attention that it freezes (they only
    # validate the mask against the fixed head count) and about the packed sequence lengths
    # (recorded as tensors): any batch size and history length traces the same.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(wrapper, example)
    return traced  # type: ignore[no-any-return]


def new_version(root: Path, model: str = "sasrec", now: datetime | None = None) -> str:
    """``<model>-<yyyymmddHHMMSS>`` (UTC), suffixed ``-2``, ``-3`` ... if it exists already."""
    base = f"{model}-{(now or datetime.now(UTC)).strftime('%Y%m%d%H%M%S')}"
    version, k = base, 1
    while (root / version).exists():
        k += 1
        version = f"{base}-{k}"
    return version


def export_artifact(
    model: SequenceModel,
    item_ids: Sequence[str],
    root: Path,
    *,
    dataset: str,
    metrics: dict[str, Any] | None = None,
    version: str | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``root/<version>/`` (model.pt, vocab.json, card.json) atomically; returns it."""
    if len(item_ids) != model.n_items:
        raise ValueError(f"{len(item_ids)} item ids for a model of {model.n_items} items")
    root.mkdir(parents=True, exist_ok=True)
    model.eval()
    kind = "sasrec" if isinstance(model, SASRec) else "dmmhyrec"
    version = version or new_version(root, kind)
    final = root / version
    if final.exists():
        raise FileExistsError(final)
    tmp = root / f".tmp-{version}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        to_torchscript(model).save(str(tmp / MODEL_FILE))
        (tmp / VOCAB_FILE).write_text(json.dumps(list(item_ids)))
        now = datetime.now(UTC)
        card = {
            "version": version,
            "model": kind,
            "L": model.config.max_len,
            "n_items": model.n_items,
            "dataset": dataset,
            "metrics": metrics or {},
            "created_at": now.isoformat(),
            "created_at_s": now.timestamp(),
            "input": "history [B, L] int64, left-padded, 0 = padding, vocab[j] is index j + 1",
            "output": "scores [B, n_items], column j = vocab[j]",
            **(extra or {}),
        }
        (tmp / CARD_FILE).write_text(json.dumps(card, indent=2))
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("wrote %s (%d items, L=%d)", final, model.n_items, model.config.max_len)
    return final


@dataclass(frozen=True)
class Artifact:
    """A loaded artifact folder."""

    path: Path
    module: torch.jit.ScriptModule
    vocab: list[str]
    card: dict[str, Any]

    @property
    def version(self) -> str:
        return str(self.card["version"])


def is_artifact(path: Path) -> bool:
    """A complete artifact folder (not a temporary one)."""
    return (
        path.is_dir()
        and not path.name.startswith(".")
        and all((path / f).is_file() for f in (MODEL_FILE, VOCAB_FILE, CARD_FILE))
    )


def latest_artifact(root: Path) -> Path | None:
    """The newest complete version under ``root`` (by card ``created_at_s``, then name)."""

    def created_at(p: Path) -> float | None:
        if not is_artifact(p):
            return None
        return float(json.loads((p / CARD_FILE).read_text()).get("created_at_s", 0.0))

    return newest_version(root, created_at)


def load_artifact(path: Path) -> Artifact:
    """Load model.pt (TorchScript, CPU, eval), vocab.json and card.json."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is what we serve
        module = torch.jit.load(str(path / MODEL_FILE), map_location="cpu").eval()
    vocab = [str(t) for t in json.loads((path / VOCAB_FILE).read_text())]
    card: dict[str, Any] = json.loads((path / CARD_FILE).read_text())
    if len(vocab) != int(card["n_items"]):
        raise ValueError(f"{path}: vocab has {len(vocab)} ids, card says {card['n_items']}")
    return Artifact(path=path, module=module, vocab=vocab, card=card)


def holdout_metrics(
    rec: SASRecRec | DMMHyRecRec, data: Dataset, ks: Sequence[int] = (10,)
) -> dict[str, float]:
    """Full-ranking test metrics (mean over cases) of a fitted recommender."""
    from models.recsys.metrics import full_ranking

    if not data.test:
        return {}
    hist = [c.history for c in data.test]
    scores = rec.score(hist, [c.user for c in data.test])
    res = full_ranking(scores, [c.target for c in data.test], hist, data.exclude_history, ks=ks)
    return {k: float(np.mean(v)) for k, v in res.items()}


def train_artifact(
    dataset: str,
    path: Path,
    out: Path,
    *,
    model: str = "sasrec",
    epochs: int = 200,
    max_len: int = 50,
    batch_size: int = 256,
    lr: float = 1e-3,
    seed: int = 0,
    max_seconds: float = 1e9,
    config: SASRecConfig | None = None,
) -> Path:
    """Load a log, train with early stopping on validation NDCG@10, export; returns the folder."""
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose from {MODELS}")
    data = load_dataset(dataset, path)
    tc = TrainConfig(
        epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, max_seconds=max_seconds
    )
    rec: SASRecRec | DMMHyRecRec = (
        SASRecRec(config or SASRecConfig(max_len=max_len), tc)
        if model == "sasrec"
        else DMMHyRecRec(DMMHyRecConfig(max_len=max_len), tc)
    )
    log.info("training %s on %s (%d users, %d items)", model, dataset, data.n_users, data.n_items)
    rec.fit(data)
    if not isinstance(rec.model, SASRec | DMMHyRec):
        raise TypeError(f"expected a fitted {model}, got {type(rec.model).__name__}")
    metrics = {"valid": {"NDCG@10": rec.best_valid}, "test": holdout_metrics(rec, data)}
    return export_artifact(
        rec.model,
        data.item_ids,
        out,
        dataset=dataset,
        metrics=metrics,
        extra={"epochs_run": rec.epochs_run, "source": str(path), "n_users": data.n_users},
    )
