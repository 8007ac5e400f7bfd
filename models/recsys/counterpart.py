"""The offline number beside a live replay: the served configuration, scored on the same events.

A replay scores every test event of a 30Music slice against the list the running system held
before it (``models.recsys.prequential``). Its offline counterpart is the offline ``hybrid``
(``models.recsys.hybrid``, the same ``models.fusion_rule.fuse`` the agent ranks with) with

* the **served mix** (the fusion-weights artifact's ``sequence`` mix, not re-chosen on
  validation: the configuration, not a better one);
* the **served sequence model** (the very TorchScript artifact Triton serves, read here through
  its vocabulary: :class:`ArtifactRec`), and the offline stand-ins of the other signals fitted
  on the slice's training period: artist one-hot content KNN for audio, ItemKNN for co-plays,
  training counts for popularity (``fresh`` has no offline stand-in);
* the **same events**: the slice's time split (``models.recsys.data.split_time``), every test
  event of a known listener and track, each predicted from all of the listener's earlier events
  -- prequential over the test period, exactly the events the replay scores;
* full ranking of the catalogue, top 20, ties broken at random (seeded), as in the tables.

It is reported in :data:`VARIANTS`: ``offline`` is the table protocol (history not excluded, all
signals); the others switch on, one by one, what the live system does differently (it never
recommends a track the listener heard; 30Music tracks carry no audio live), so the gap can be
split into its causes.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models.fusion_rule import MixWeights, capped, familiarity, scale_by_max
from models.fusion_weights import Taste
from models.recsys.baselines import ItemKNN, PopRank, Recommender
from models.recsys.contentknn import ContentKNN, ContentKNNConfig
from models.recsys.data import Dataset
from models.recsys.export_user import load_artifact
from models.recsys.hybrid import HybridRec, signal_of
from models.recsys.metrics import mask_history, top_k
from models.recsys.prequential import Scored, score
from schemas.events import ListKind

log = logging.getLogger(__name__)

LIST_LEN = 20
"""Items per ranked list (the replay asks the stack for ``top_k`` = 20)."""


@dataclass(frozen=True, kw_only=True)
class Variant:
    """One offline protocol: whether heard tracks are excluded, which signals are left out."""

    exclude_history: bool
    drop: tuple[str, ...] = ()
    pools: bool = False
    """Rank only what the agent's sources propose (:data:`POOLS`), not the whole catalogue."""
    familiar: bool = False
    """A `mix` list: the favourites of the recent window come back as the agent brings
    them (:func:`familiar_scores`), on top of the heard tracks' exclusion."""
    note: str = ""


POOLS: dict[str, int] = {
    "audio": 60,
    "collab": 30,
    "popularity": 40,
    "sequence": 80,
    "artist": 30,
}
"""Candidates each source proposes to the agent with lists of 20 (``streams.candidates``:
``audio_candidates(20)`` ANN hits, ``COLLAB_CANDIDATES`` co-played tracks, ``2 * top_k``
popular tracks, the sequence model's ``sequence_top_n(top_k)`` best unheard tracks)."""


VARIANTS: dict[str, Variant] = {
    "offline": Variant(
        exclude_history=False, note="the tables' protocol: history not excluded, all signals"
    ),
    "offline-excl": Variant(exclude_history=True, note="heard tracks excluded, as the agent does"),
    "offline-excl-noaudio": Variant(
        exclude_history=True,
        drop=("audio",),
        note="heard tracks excluded and no content signal (30Music tracks have no audio live)",
    ),
    "offline-excl-noaudio-pools": Variant(
        exclude_history=True,
        drop=("audio",),
        pools=True,
        note="as above, ranking only each source's top candidates, as the agent does",
    ),
    "offline-mix-noaudio": Variant(
        exclude_history=True,
        drop=("audio",),
        familiar=True,
        note="the `mix` list: as offline-excl-noaudio, and favourites of the recent window "
        "come back after the cool-down, scored by the familiar signal",
    ),
    "offline-mix-noaudio-pools": Variant(
        exclude_history=True,
        drop=("audio",),
        pools=True,
        familiar=True,
        note="the `mix` list from each source's top candidates, as the agent ranks it",
    ),
}
"""The protocols reported; ``offline-excl-noaudio*`` are the `new` list's counterparts, and
``offline-mix-noaudio*`` the `mix` list's (:data:`KIND_COUNTERPARTS`)."""

KIND_COUNTERPARTS: dict[ListKind, tuple[str, ...]] = {
    ListKind.NEW: ("offline-excl-noaudio", "offline-excl-noaudio-pools"),
    ListKind.MIX: ("offline-mix-noaudio", "offline-mix-noaudio-pools"),
}
"""Each kind of list and the offline variants that are its counterpart (the same
configuration: 30Music tracks have no audio live)."""


class ArtifactRec:
    """A served sequence-model artifact (``resonate train``) as an offline ``Recommender``:
    histories are mapped to the artifact's vocabulary by track id, scores back to the
    dataset's items (items the artifact does not know score -inf)."""

    def __init__(self, path: Path) -> None:
        self.artifact = load_artifact(path)
        self._to_vocab: np.ndarray = np.zeros(0, dtype=np.int64)
        self._cols: np.ndarray = np.zeros(0, dtype=np.int64)

    @property
    def version(self) -> str:
        """The artifact's version (what the live lists name)."""
        return self.artifact.version

    def fit(self, train: Dataset) -> None:
        """No training: only the id mappings between the dataset and the vocabulary."""
        index = {t: j for j, t in enumerate(self.artifact.vocab)}
        # dataset item -> artifact column (-1: unknown to the model)
        self._cols = np.asarray([index.get(t, -1) for t in train.item_ids], dtype=np.int64)
        self._to_vocab = self._cols + 1  # the model's input index (0 = padding / unknown)

    def score(
        self, histories: Sequence[Sequence[int]], users: Sequence[int] | None = None
    ) -> np.ndarray:
        """Next-item logits [B, n_items] of the dataset's items."""
        length = int(self.artifact.card["L"])
        seq = np.zeros((len(histories), length), dtype=np.int64)
        for b, hist in enumerate(histories):
            known = [int(i) for i in self._to_vocab[np.asarray(hist, dtype=np.int64)] if i > 0]
            tail = known[-length:]
            if tail:
                seq[b, length - len(tail) :] = tail
        with torch.inference_mode():
            logits = self.artifact.module(torch.from_numpy(seq)).numpy().astype(np.float64)
        out = np.full((len(histories), len(self._cols)), -np.inf)
        known_cols = self._cols >= 0
        out[:, known_cols] = logits[:, self._cols[known_cols]]
        return out


def served_hybrid(
    data: Dataset, mix: MixWeights, sequence: Recommender | None, *, window: int
) -> HybridRec:
    """The offline hybrid with fitted components and the served mix (no weight search).
    With item content (30Music: the artist one-hot) it stands in twice: for audio (the whole
    history, as in the tables) and as the ``artist`` signal over the agent's recent
    ``window``, which is what the agent counts."""
    parts: list[tuple[str, Recommender]] = [("pop", PopRank()), ("itemknn", ItemKNN())]
    if data.content is not None:
        parts.append(("contentknn", ContentKNN()))
        parts.append(("artistknn", ContentKNN(ContentKNNConfig(last_n=window))))
    if sequence is not None:
        parts.append(("sasrec", sequence))
    hybrid = HybridRec(parts)
    for name, model in hybrid.components:
        log.info("counterpart: fitting %s", name)
        model.fit(data)
    hybrid.weights = tuple(mix.weight(signal_of(n)) for n, _ in hybrid.components)
    return hybrid


@dataclass(frozen=True, kw_only=True)
class LiveWindows:
    """What the agent's window holds at each test case, for the signals that read it
    (familiar, artist): the replay sends every event of the log, also those of tracks the
    offline dataset drops (fewer than 2 training events: ~60% of a 30Music slice's events),
    so the agent's last ``seq_len`` events reach less far back than the dataset history's."""

    windows: Sequence[Sequence[str]]
    """Per test case (``data.test`` order), the track ids of the listener's last ``seq_len``
    events before it, oldest first, every track of the log."""
    artists: Mapping[str, str]
    """Track -> artist for every track of the log (the replay sends it with each play)."""


def familiar_scores(
    windows: Sequence[Sequence[Hashable]],
    n_items: int,
    *,
    taste: Taste,
    index: Mapping[Hashable, int] | None = None,
) -> np.ndarray:
    """The familiar signal [B, n_items], scaled by its row maximum, of each window (the
    agent's recent events, oldest first): ``models.fusion_rule.familiarity``, the function
    the live `mix` list calls. ``index`` maps a window's ids to items (None: they are item
    indices); a track the dataset does not know takes its place in the window (and in the
    cool-down) but cannot be scored. 30Music has plays only: every event is positive."""
    out = np.zeros((len(windows), n_items))
    for b, win in enumerate(windows):
        fam = familiarity(
            [(t, True) for t in win], decay=taste.recency_decay, cooldown=taste.familiar_cooldown
        )
        for t, v in fam.items():
            i = t if index is None else index.get(t)
            if i is not None:
                out[b, int(i)] = v  # type: ignore[call-overload]
    return scale_by_max(out)


def artist_scores(
    windows: Sequence[Sequence[str]], item_ids: Sequence[str], artists: Mapping[str, str]
) -> np.ndarray:
    """The artist signal [B, n_items] as the agent computes it (``streams.candidates.
    artist_counts``): how many of the window's plays are by the item's artist, scaled by the
    row maximum."""
    names = sorted({a for a in artists.values()})
    col = {a: k for k, a in enumerate(names)}
    item_col = np.asarray([col.get(artists.get(t, ""), -1) for t in item_ids], dtype=np.int64)
    out = np.zeros((len(windows), len(item_ids)))
    for b, win in enumerate(windows):
        counts = np.zeros(len(names) + 1)  # the last: "no artist", always 0
        for t in win:
            if (a := artists.get(t)) is not None:
                counts[col[a]] += 1
        out[b] = counts[item_col]
    return scale_by_max(out)


def ranked_lists(
    hybrid: HybridRec,
    data: Dataset,
    variant: Variant,
    *,
    taste: Taste,
    window: int,
    live: LiveWindows | None = None,
    max_per_artist: int = 0,
    seed: int = 0,
    batch: int = 256,
) -> list[list[str]]:
    """Top-``LIST_LEN`` track ids per test case under ``variant``; with ``live``, the
    familiar and artist signals read the agent's windows instead of the dataset histories."""
    keep = tuple(
        w if signal_of(n) not in variant.drop else 0.0
        for (n, _), w in zip(hybrid.components, hybrid.weights, strict=True)
    )
    rng = np.random.default_rng(seed)
    artists = item_artists(data, live)
    out: list[list[str]] = []
    for start in range(0, len(data.test), batch):
        cases = data.test[start : start + batch]
        hist = [c.history for c in cases]
        parts = hybrid._scores(hist, [c.user for c in cases])
        windows: Sequence[Sequence[Hashable]] = [h[-window:] for h in hist]
        index: Mapping[Hashable, int] | None = None
        if live is not None:
            windows = live.windows[start : start + len(cases)]
            index = {t: i for i, t in enumerate(data.item_ids)}
            parts = [
                artist_scores(windows, data.item_ids, live.artists)  # type: ignore[arg-type]
                if signal_of(n) == "artist"
                else p
                for (n, _), p in zip(hybrid.components, parts, strict=True)
            ]
        if variant.exclude_history:
            parts = _sequence_over_unheard(hybrid, parts, hist)
        scores = hybrid._mixed(parts, keep)
        if variant.pools:
            scores = _in_pools(hybrid, parts, hist, scores, variant.drop)
        if variant.exclude_history:
            scores = mask_history(scores, hist)
        if variant.familiar:
            # A favourite's score is its familiar part alone: the agent's sources propose
            # unheard tracks only, so no other signal speaks for it live.
            fam = familiar_scores(windows, scores.shape[1], taste=taste, index=index)
            scores = np.where(fam > 0, taste.familiar_weight * fam, scores)
        # Room for the per-artist cap: the best 20 x 20 (the cap is >= 1 per artist).
        width = LIST_LEN * LIST_LEN if max_per_artist else LIST_LEN
        for b, row in enumerate(top_k(scores, width, rng)):
            # An excluded track (-inf) is never shown, even when the catalogue is tiny.
            ranked = [int(i) for i in row if np.isfinite(scores[b, int(i)])]
            own = set(np.flatnonzero(fam[b] > 0).tolist()) if variant.familiar else set()
            out.append(
                [
                    data.item_ids[i]
                    for i in capped(ranked, artists, k=LIST_LEN, cap=max_per_artist, exempt=own)
                ]
            )
    return out


def _sequence_over_unheard(
    hybrid: HybridRec, parts: list[np.ndarray], histories: Sequence[Sequence[int]]
) -> list[np.ndarray]:
    """The sequence signal as the agent receives it: relative to the best *unheard* track.

    The served model returns its top unheard tracks, so live ``exp(logit - best)`` has the
    best unheard track at 1; over the whole catalogue the best is often a replay, which
    would make every unheard track's signal smaller next to the others than it is live.
    ``part = exp(logit - best of all)``, so dividing by its best unheard value rescales it."""
    out = []
    for (name, _), part in zip(hybrid.components, parts, strict=True):
        if signal_of(name) == "sequence":
            best = mask_history(part, histories, 0.0).max(axis=1, keepdims=True)
            part = part / np.where(best > 0, best, 1.0)
        out.append(part)
    return out


def item_artists(data: Dataset, live: LiveWindows | None) -> list[str | None]:
    """Each item's artist: the log's (``live``) or the dataset's one-hot content."""
    if live is not None:
        return [live.artists.get(t) for t in data.item_ids]
    if data.content is None:
        return [None] * len(data.item_ids)
    has = np.asarray(data.content).sum(axis=1) > 0
    col = np.asarray(data.content).argmax(axis=1)
    return [f"artist-{int(c)}" if h else None for c, h in zip(col, has, strict=True)]


def _in_pools(
    hybrid: HybridRec,
    parts: list[np.ndarray],
    histories: Sequence[Sequence[int]],
    scores: np.ndarray,
    drop: tuple[str, ...],
) -> np.ndarray:
    """``scores`` with every item outside the union of the sources' candidate pools at -inf.
    A source proposes its best ``POOLS[signal]`` items with evidence > 0; the sequence model
    proposes unheard items only, as the served one does."""
    allowed = np.zeros(scores.shape, dtype=bool)
    rows = np.arange(scores.shape[0])[:, None]
    for (name, _), part in zip(hybrid.components, parts, strict=True):
        sig = signal_of(name)
        if sig in drop:
            continue
        p = mask_history(part, histories, 0.0) if sig == "sequence" else part
        k = min(POOLS[sig], p.shape[1])
        idx = np.argpartition(-p, k - 1, axis=1)[:, :k]
        keep = np.take_along_axis(p, idx, axis=1) > 0
        allowed[np.broadcast_to(rows, idx.shape)[keep], idx[keep]] = True
    out: np.ndarray = np.where(allowed, scores, -np.inf)
    return out


def counterpart(
    data: Dataset,
    mix: MixWeights,
    sequence: Recommender | None,
    *,
    taste: Taste,
    window: int,
    live: LiveWindows | None = None,
    max_per_artist: int = 0,
    seed: int = 0,
) -> dict[str, Scored]:
    """Every variant of :data:`VARIANTS` scored prequentially on ``data.test``; ``taste``
    and ``window`` (the agent's ``seq_len``) as served, for the `mix` variants; ``live``:
    the agent's windows (:class:`LiveWindows`); ``max_per_artist``: the agent's diversity
    rule (0: none, as in the tables)."""
    hybrid = served_hybrid(data, mix, sequence, window=window)
    listeners = [data.user_ids[c.user] for c in data.test]
    targets = [data.item_ids[c.target] for c in data.test]
    out: dict[str, Scored] = {}
    for name, variant in VARIANTS.items():
        lists = ranked_lists(
            hybrid,
            data,
            variant,
            taste=taste,
            window=window,
            live=live,
            max_per_artist=max_per_artist,
            seed=seed,
        )
        out[name] = score(list(zip(listeners, lists, targets, strict=True)))
    return out
