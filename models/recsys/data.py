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

Items are indexed ``0 .. n_items - 1``; models that need a padding id shift by one internally.
"""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class EvalCase:
    """One prediction: the user's chronological history and the held-out next item."""

    user: int
    history: list[int]
    target: int


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


def load_lastfm(path: Path) -> Dataset:
    """Load the S3-Rec ``LastFM.txt`` file and split it leave-last-out."""
    raw: list[tuple[str, list[str]]] = []
    with Path(path).open() as fh:
        for line in fh:
            parts = line.split()
            if parts:
                raw.append((parts[0], parts[1:]))
    item_ids = sorted({i for _, items in raw for i in items}, key=int)
    index = {i: k for k, i in enumerate(item_ids)}
    seqs = [[index[i] for i in items] for _, items in raw]
    return split_leave_last_out("lastfm", seqs, len(item_ids), item_ids, [u for u, _ in raw])


@dataclass(frozen=True)
class Event:
    """One play in a session log."""

    user: str
    session: str
    item: str
    time: int


def read_30music(path: Path) -> list[Event]:
    """Read a session-rec 30Music slice (TSV with header) into events in file order."""
    with Path(path).open(newline="") as fh:
        reader = csv.DictReader(fh, delimiter="\t")
        return [Event(r["UserId"], r["SessionId"], r["ItemId"], int(r["Time"])) for r in reader]


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
    )


def load_30music(path: Path, test_frac: float = 0.2, min_support: int = 2) -> Dataset:
    """Load one 30Music slice and time-split it (history items are *not* excluded: 30Music
    has ~16% repeat plays, and session-rec does not exclude them either)."""
    return split_time(read_30music(path), "30music", test_frac, min_support)
