"""Listening-log loaders and evaluation splits for sequential recommendation.

Two real logs are supported (read in place; paths are parameters):

* **Last.fm (S3-Rec)** -- ``LastFM.txt``, one line ``user_id item_1 item_2 ...`` per user in
  time order. Split exactly like S3-Rec's ``get_user_seqs``: the model trains on
  ``seq[:-2]``; validation predicts ``seq[-2]`` from ``seq[:-2]``; test predicts ``seq[-1]``
  from ``seq[:-1]`` (train + valid as history, the model is *not* retrained on the valid item).
* **30Music (session-rec slices)** -- TSV ``UserId SessionId ItemId Time ArtistId``. Time split:
  events before ``t_min + 0.8 * (t_max - t_min)`` are training, the rest test. Items, then users,
  with fewer than 2 training events are dropped; test events of unknown items or users are
  dropped. Test cases: for every remaining test event, predict it given *all* prior events of
  the user (training events + earlier test events). Validation (for early stopping) is carved
  out of training: each user's last training event is predicted from the earlier ones and is
  removed from the model's training sequence (kept in test histories).
* **Interaction events (JSON lines, our public ``interactions`` contract)** -- one reader
  (``read_interactions``: validated, deduplicated by ``event_id``, invalid lines skipped) and
  two views (``load_events(view=...)``). ``typed`` (evaluation):
  per-user chronological ``(item, type)`` sequences with ``type`` in play/skip/like. Split
  leave-last-out on *positive* events (play or like): test predicts the user's last positive
  event from every event before it (skips included), valid the second-to-last positive event,
  training is everything before the valid target. A skip is never a target. ``drop_skips`` and
  ``skips_as_plays`` turn a typed dataset into the two skip-unaware baselines. ``positives``
  (training the served model): skips removed, S3-Rec's leave-last-out as for Last.fm.

Side information: ``load_lastfm`` also reads ``LastFM_item2attributes.json`` next to
``LastFM.txt`` when present (S3-Rec's item -> tag ids) into ``Dataset.content``, a multi-hot
``[n_items, n_tags]`` matrix -- the stand-in content modality for these audio-less tracks.
30Music slices carry ``ArtistId``: ``split_time`` attaches a one-hot artist matrix.

Items are indexed ``0 .. n_items - 1``; models that need a padding id shift by one internally.
"""

from __future__ import annotations

import csv
import json
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np

log = logging.getLogger(__name__)

PLAY, SKIP, LIKE = 0, 1, 2
"""Event-type codes of typed datasets (``Dataset.train_types``, ``EvalCase.history_types``)."""
TYPE_CODES: dict[str, int] = {"play": PLAY, "skip": SKIP, "like": LIKE}


@dataclass(frozen=True)
class EvalCase:
    """One prediction: the user's chronological history and the held-out next item."""

    user: int
    history: list[int]
    target: int
    history_types: list[int] | None = None
    """Event type per history item (typed datasets only)."""


@dataclass(frozen=True)
class Dataset:
    """Per-user chronological item-index sequences with validation and test cases."""

    name: str
    n_items: int
    item_ids: list[str]
    """Item index -> raw item id."""
    user_ids: list[str]
    """User index -> raw user id."""
    train: list[list[int]]
    """Per user index: the chronological item indices the models may train on."""
    valid: list[EvalCase]
    test: list[EvalCase]
    exclude_history: bool
    """Whether the protocol removes already-seen items from the ranking (see metrics.py)."""
    train_sessions: list[list[int]] = field(default_factory=list)
    """Training sequences cut at session boundaries (item-item co-occurrence); falls back to
    ``train`` when empty."""
    content: np.ndarray | None = None
    """Optional item side information ``[n_items, n_features]`` (float32; multi-hot tags on
    Last.fm); an all-zero row means the item has no content."""
    train_types: list[list[int]] = field(default_factory=list)
    """Per user, the event type of each ``train`` item (``PLAY``/``SKIP``/``LIKE``); empty
    for untyped logs."""

    @property
    def has_types(self) -> bool:
        """Whether events carry types (skip-aware models add a type embedding)."""
        return bool(self.train_types)

    @property
    def n_users(self) -> int:
        """Number of users (rows of ``train``)."""
        return len(self.user_ids)

    def sessions(self) -> list[list[int]]:
        """Training sessions if the log has them, else the per-user training sequences."""
        return self.train_sessions if self.train_sessions else self.train


def split_leave_last_out(
    name: str,
    seqs: list[list[int]],
    n_items: int,
    item_ids: list[str],
    user_ids: list[str],
) -> Dataset:
    """S3-Rec leave-last-out split of chronological per-user sequences (each of length >= 3)."""
    train: list[list[int]] = []
    valid: list[EvalCase] = []
    test: list[EvalCase] = []
    for u, seq in enumerate(seqs):
        if len(seq) < 3:
            raise ValueError(f"user {user_ids[u]} has {len(seq)} < 3 interactions")
        train.append(list(seq[:-2]))
        valid.append(EvalCase(u, list(seq[:-2]), seq[-2]))
        test.append(EvalCase(u, list(seq[:-1]), seq[-1]))
    return Dataset(name, n_items, item_ids, user_ids, train, valid, test, exclude_history=True)


def load_item_attributes(path: Path, item_ids: list[str]) -> np.ndarray:
    """Multi-hot ``[len(item_ids), n_attributes]`` float32 matrix from an S3-Rec
    ``item2attributes.json`` (raw item id -> list of attribute ids, repeats allowed). Only
    attributes of catalogue items get a column; items missing from the file get a zero row."""
    raw: dict[str, list[int]] = json.loads(Path(path).read_text())
    used = sorted({a for i in item_ids for a in raw.get(i, [])})
    col = {a: k for k, a in enumerate(used)}
    out = np.zeros((len(item_ids), len(used)), dtype=np.float32)
    for row, i in enumerate(item_ids):
        for a in set(raw.get(i, [])):
            out[row, col[a]] = 1.0
    return out


def load_lastfm(path: Path, content: bool = True) -> Dataset:
    """Load the S3-Rec ``LastFM.txt`` file and split it leave-last-out; with ``content``, attach
    the tag matrix of ``LastFM_item2attributes.json`` next to it if that file exists."""
    raw: list[tuple[str, list[str]]] = []
    with Path(path).open() as fh:
        for line in fh:
            parts = line.split()
            if parts:
                raw.append((parts[0], parts[1:]))
    item_ids = sorted({i for _, items in raw for i in items}, key=int)
    index = {i: k for k, i in enumerate(item_ids)}
    seqs = [[index[i] for i in items] for _, items in raw]
    data = split_leave_last_out("lastfm", seqs, len(item_ids), item_ids, [u for u, _ in raw])
    attrs = Path(path).parent / "LastFM_item2attributes.json"
    if content and attrs.exists():
        data = replace(data, content=load_item_attributes(attrs, item_ids))
    return data


@dataclass(frozen=True)
class Event:
    """One play in a session log."""

    user: str
    session: str
    item: str
    time: int
    artist: str = ""
    """The track's artist id when the log has one (30Music does): content side information."""


def read_30music(path: Path) -> list[Event]:
    """Read a session-rec 30Music slice (TSV with header) into events in file order."""
    with Path(path).open(newline="") as fh:
        reader = csv.DictReader(fh, delimiter="\t")
        return [
            Event(r["UserId"], r["SessionId"], r["ItemId"], int(r["Time"]), r.get("ArtistId", ""))
            for r in reader
        ]


def artist_content(events: list[Event], item_ids: list[str]) -> np.ndarray | None:
    """One-hot ``[len(item_ids), n_artists]`` float32 artist matrix, or None if the log has no
    artists. The artist is known when a track is uploaded, so unlike user-assigned tags it is
    leak-free content, and it makes unseen tracks of known artists scorable."""
    artist = {e.item: e.artist for e in events if e.artist}
    if not artist:
        return None
    cols = {a: k for k, a in enumerate(sorted({artist[i] for i in item_ids if i in artist}))}
    out = np.zeros((len(item_ids), len(cols)), dtype=np.float32)
    for row, i in enumerate(item_ids):
        if i in artist:
            out[row, cols[artist[i]]] = 1.0
    return out


def split_time(
    events: list[Event], name: str = "30music", test_frac: float = 0.2, min_support: int = 2
) -> Dataset:
    """Time split of a play log; see the module docstring for the exact protocol."""
    if not events:
        raise ValueError("empty log")
    # Stable sort keeps the file order of equal timestamps (the log is ordered within sessions).
    order = sorted(range(len(events)), key=lambda k: events[k].time)
    evs = [events[k] for k in order]
    t_min, t_max = evs[0].time, evs[-1].time
    cutoff = t_min + (1.0 - test_frac) * (t_max - t_min)
    train_ev = [e for e in evs if e.time < cutoff]
    test_ev = [e for e in evs if e.time >= cutoff]

    item_count = Counter(e.item for e in train_ev)
    train_ev = [e for e in train_ev if item_count[e.item] >= min_support]
    user_count = Counter(e.user for e in train_ev)
    train_ev = [e for e in train_ev if user_count[e.user] >= min_support]

    item_ids = sorted({e.item for e in train_ev})
    user_ids = sorted({e.user for e in train_ev})
    item_index = {i: k for k, i in enumerate(item_ids)}
    user_index = {u: k for k, u in enumerate(user_ids)}

    full: list[list[int]] = [[] for _ in user_ids]
    sessions: dict[tuple[int, str], list[int]] = defaultdict(list)
    for e in train_ev:
        u = user_index[e.user]
        full[u].append(item_index[e.item])
        sessions[(u, e.session)].append(item_index[e.item])

    train: list[list[int]] = []
    valid: list[EvalCase] = []
    for u, seq in enumerate(full):
        train.append(seq[:-1])
        valid.append(EvalCase(u, seq[:-1], seq[-1]))

    test: list[EvalCase] = []
    history = [list(s) for s in full]
    for e in test_ev:
        if e.user not in user_index or e.item not in item_index:
            continue
        u, i = user_index[e.user], item_index[e.item]
        test.append(EvalCase(u, list(history[u]), i))
        history[u].append(i)

    # The valid target is each user's last training event: drop it from the session lists too.
    last_sessions: dict[int, tuple[int, str]] = {}
    for e in train_ev:
        last_sessions[user_index[e.user]] = (user_index[e.user], e.session)
    sess_lists = {k: list(v) for k, v in sessions.items()}
    for key in last_sessions.values():
        sess_lists[key] = sess_lists[key][:-1]
    train_sessions = [s for s in sess_lists.values() if s]
    return Dataset(
        name,
        len(item_ids),
        item_ids,
        user_ids,
        train,
        valid,
        test,
        exclude_history=False,
        train_sessions=train_sessions,
        content=artist_content(events, item_ids),
    )


def load_30music(path: Path, test_frac: float = 0.2, min_support: int = 2) -> Dataset:
    """Load one 30Music slice and time-split it (history items are *not* excluded: 30Music
    has ~16% repeat plays, and session-rec does not exclude them either)."""
    return split_time(read_30music(path), "30music", test_frac, min_support)


def split_typed(
    name: str, seqs: dict[str, list[tuple[str, int]]], min_positive: int = 3
) -> Dataset:
    """Leave-last-out split on positive events of chronological per-user ``(item, type)``
    sequences (see the module docstring); users with fewer than ``min_positive`` positive
    events are dropped. History items are not excluded from the ranking (music replays)."""
    kept = {u: evs for u, evs in seqs.items() if sum(t != SKIP for _, t in evs) >= min_positive}
    item_ids = sorted({i for evs in kept.values() for i, _ in evs})
    index = {i: k for k, i in enumerate(item_ids)}
    user_ids = sorted(kept)
    train: list[list[int]] = []
    train_types: list[list[int]] = []
    valid: list[EvalCase] = []
    test: list[EvalCase] = []
    for u, uid in enumerate(user_ids):
        items = [index[i] for i, _ in kept[uid]]
        types = [t for _, t in kept[uid]]
        pos = [k for k, t in enumerate(types) if t != SKIP]
        v, t_ = pos[-2], pos[-1]
        train.append(items[:v])
        train_types.append(types[:v])
        valid.append(EvalCase(u, items[:v], items[v], types[:v]))
        test.append(EvalCase(u, items[:t_], items[t_], types[:t_]))
    return Dataset(
        name,
        len(item_ids),
        item_ids,
        user_ids,
        train,
        valid,
        test,
        exclude_history=False,
        train_types=train_types,
    )


EventView = Literal["typed", "positives"]
"""How ``load_events`` reads a log: ``typed`` keeps every event with its type (skip-aware
evaluation); ``positives`` drops skips before anything else (what the served sequence model is
fed and trained on: items only ever skipped are not in its catalogue)."""


def read_interactions(path: Path) -> list[tuple[str, str, int]]:
    """The one reader of ``interactions`` JSON-lines logs: ``(user, track, type code)`` in
    per-user time order (``occurred_at``, file order breaks ties). Invalid lines are skipped
    with a warning; a replayed ``event_id`` counts once."""
    from schemas.events import Interaction

    seen: set[str] = set()
    rows: list[tuple[str, float, int, str, int]] = []
    bad = 0
    with Path(path).open() as fh:
        for n, line in enumerate(fh):
            if not line.strip():
                continue
            try:
                ev = Interaction.model_validate_json(line)
            except ValueError:
                bad += 1
                log.warning("line %d of %s is not an interaction; skipped", n + 1, path)
                continue
            if ev.event_id in seen:
                continue
            seen.add(ev.event_id)
            rows.append(
                (ev.user_id, ev.occurred_at.timestamp(), n, ev.track_id, TYPE_CODES[ev.type])
            )
    if bad:
        log.warning("%s: %d invalid lines skipped", path, bad)
    rows.sort(key=lambda r: (r[0], r[1], r[2]))
    return [(user, item, typ) for user, _, _, item, typ in rows]


def load_events(path: Path, *, view: EventView = "typed", min_positive: int = 3) -> Dataset:
    """Load an ``interactions`` log (``read_interactions``) in one of its views and split it
    leave-last-out on positive events; users with fewer than ``min_positive`` positives are
    left out. ``typed``: ``split_typed`` (skip-aware, history not excluded). ``positives``:
    skips dropped, ``split_leave_last_out`` (history excluded, as the fusion agent excludes
    what the listener heard) -- the training view of ``resonate train --dataset events``."""
    events = read_interactions(path)
    if view == "typed":
        seqs: dict[str, list[tuple[str, int]]] = defaultdict(list)
        for user, item, typ in events:
            seqs[user].append((item, typ))
        return split_typed("events", dict(seqs), min_positive)
    if view != "positives":
        raise ValueError(f"unknown view {view!r}")
    per_user: dict[str, list[str]] = defaultdict(list)
    for user, item, typ in events:
        if typ != SKIP:
            per_user[user].append(item)
    users = sorted(u for u, items in per_user.items() if len(items) >= min_positive)
    if not users:
        raise ValueError(f"{path}: no user with at least {min_positive} positive events")
    item_ids = sorted({t for u in users for t in per_user[u]})
    index = {t: k for k, t in enumerate(item_ids)}
    seqs_pos = [[index[t] for t in per_user[u]] for u in users]
    return split_leave_last_out("events", seqs_pos, len(item_ids), item_ids, users)


def _filter_case(case: EvalCase, keep_skips: bool) -> EvalCase:
    types = case.history_types or [PLAY] * len(case.history)
    hist = [i for i, t in zip(case.history, types, strict=True) if keep_skips or t != SKIP]
    return EvalCase(case.user, hist, case.target)


def drop_skips(data: Dataset) -> Dataset:
    """Skip-unaware baseline: remove skip events from training and histories, drop the types
    (targets are unchanged, so metrics stay comparable with the typed dataset)."""
    train = [
        [i for i, t in zip(s, ts, strict=True) if t != SKIP]
        for s, ts in zip(data.train, data.train_types, strict=True)
    ]
    return replace(
        data,
        name=data.name + "-dropskips",
        train=train,
        train_types=[],
        valid=[_filter_case(c, False) for c in data.valid],
        test=[_filter_case(c, False) for c in data.test],
    )


def skips_as_plays(data: Dataset) -> Dataset:
    """Skip-unaware baseline: keep skip events but forget the types (a skip looks like a play,
    and models also learn to predict skipped items)."""
    return replace(
        data,
        name=data.name + "-skipsasplays",
        train_types=[],
        valid=[_filter_case(c, True) for c in data.valid],
        test=[_filter_case(c, True) for c in data.test],
    )
