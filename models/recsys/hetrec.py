"""Rebuild the S3-Rec Last.fm benchmark from HetRec 2011 tag assignments, with or without leakage.

S3-Rec's ``LastFM.txt`` comes from ``user_taggedartists(-timestamps).dat``: an *interaction* is
a user tagging an artist, and ``LastFM_item2attributes.json`` lists, per artist, the tags of
*every* tag assignment -- including the assignments of the very (user, artist) pairs that are
held out as validation and test targets. ``load_hetrec_tags`` rebuilds the benchmark from the
raw ``user_taggedartists.dat`` (``userID artistID tagID day month year``, TSV with header):

1. interactions are the distinct (user, artist) pairs; a pair's date is, with
   ``time_rule="earliest"``, the earliest (year, month, day) of its assignments, or with
   ``time_rule="first_row"`` (S3-Rec's rule: it keeps the first row of a pair in file order) the
   date of the pair's first row -- in the sorted HetRec file, the row with the smallest tag id;
2. each user's artists are sorted by (date, numeric artist id): the dates are month-granular
   (day is 1 for 98% of rows), so ties are common; S3-Rec's stable sort over the file, which is
   ordered by (user, artist, tag), breaks them by ascending artist id as well;
3. iterative k-core: users and artists with fewer than ``min_count`` interactions are removed
   until none is left (S3-Rec: 5), and the sequences are split by ``split_leave_last_out``;
   users are ordered by numeric id and items numbered by first appearance (S3-Rec's id_map);
4. content: multi-hot tags, columns = tags with at least ``min_tag_count`` assignments in the
   whole raw file (S3-Rec keeps 388 such tags; ``>= 50`` gives 387 of them), the same columns
   with and without ``leak_free``. Rows use every assignment of the artist, by *all* users, also
   users outside the k-core (like S3-Rec); ``leak_free=True`` drops the assignments of every
   held-out (user, artist) pair, i.e. each user's validation and test interaction, and
   ``core_only=True`` further keeps only assignments of pairs inside the k-core (so with
   ``leak_free`` a row holds exactly the tags of the item's *training* interactions).

With ``time_rule="first_row"`` and ``min_count=5`` the rebuild has S3-Rec's exact size (1,090
users, 3,646 items, 52,551 interactions); sequences differ only where the public ``.dat`` file
lacks the intra-month order of the timestamp file (see ``hetrec_leak.py`` for the agreement).
"""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np

from models.recsys.data import Dataset, split_leave_last_out

Date = tuple[int, int, int]
"""(year, month, day) of a tag assignment."""
Pair = tuple[str, str]
"""(raw user id, raw artist id)."""
TimeRule = Literal["earliest", "first_row"]
S3REC_MIN_TAG_COUNT = 50
"""Tag frequency cut that reproduces 387 of the 388 tag columns of S3-Rec's Last.fm file."""


@dataclass(frozen=True)
class TagAssignment:
    """One row of ``user_taggedartists.dat``: a user put a tag on an artist on a date."""

    user: str
    artist: str
    tag: str
    date: Date


def read_tag_assignments(path: Path) -> list[TagAssignment]:
    """All rows of a HetRec ``user_taggedartists.dat`` file, in file order."""
    with Path(path).open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh, delimiter="\t")
        return [
            TagAssignment(
                r["userID"],
                r["artistID"],
                r["tagID"],
                (int(r["year"]), int(r["month"]), int(r["day"])),
            )
            for r in reader
        ]


def pair_dates(rows: Iterable[TagAssignment], time_rule: TimeRule = "earliest") -> dict[Pair, Date]:
    """Date of every distinct (user, artist) pair under ``time_rule`` (module docstring)."""
    out: dict[Pair, Date] = {}
    for r in rows:
        key = (r.user, r.artist)
        if key not in out:
            out[key] = r.date
        elif time_rule == "earliest":
            out[key] = min(out[key], r.date)
        elif time_rule != "first_row":
            raise ValueError(f"unknown time_rule {time_rule!r}")
    return out


def user_sequences(dates: dict[Pair, Date]) -> dict[str, list[str]]:
    """Per user, the artists ordered by (date, numeric artist id)."""
    per_user: dict[str, list[tuple[Date, int, str]]] = defaultdict(list)
    for (user, artist), date in dates.items():
        per_user[user].append((date, int(artist), artist))
    return {u: [a for _, _, a in sorted(items)] for u, items in per_user.items()}


def k_core(seqs: dict[str, list[str]], min_count: int) -> dict[str, list[str]]:
    """Iteratively drop users and items with fewer than ``min_count`` interactions."""
    seqs = {u: list(s) for u, s in seqs.items()}
    while True:
        item_count = Counter(a for s in seqs.values() for a in s)
        bad_users = [u for u, s in seqs.items() if len(s) < min_count]
        bad_items = {a for a, c in item_count.items() if c < min_count}
        if not bad_users and not bad_items:
            return seqs
        for u in bad_users:
            del seqs[u]
        seqs = {u: [a for a in s if a not in bad_items] for u, s in seqs.items()}


def frequent_tags(rows: Iterable[TagAssignment], min_tag_count: int) -> list[str]:
    """Tags with at least ``min_tag_count`` assignments, by numeric tag id."""
    count = Counter(r.tag for r in rows)
    return sorted((t for t, c in count.items() if c >= min_tag_count), key=int)


def held_out_pairs(user_ids: Sequence[str], seqs: Sequence[Sequence[str]]) -> set[Pair]:
    """The (user, artist) pairs of every user's validation and test target (last two items)."""
    return {(u, a) for u, s in zip(user_ids, seqs, strict=True) for a in s[-2:]}


def tag_matrix(
    rows: Iterable[TagAssignment],
    item_ids: Sequence[str],
    tags: Sequence[str],
    exclude: set[Pair] | None = None,
    only: set[Pair] | None = None,
) -> np.ndarray:
    """Multi-hot float32 ``[len(item_ids), len(tags)]`` matrix of the assignments whose pair is
    not in ``exclude`` (and, if given, is in ``only``)."""
    row_of = {a: k for k, a in enumerate(item_ids)}
    col_of = {t: k for k, t in enumerate(tags)}
    out = np.zeros((len(item_ids), len(tags)), dtype=np.float32)
    for r in rows:
        pair = (r.user, r.artist)
        if r.artist not in row_of or r.tag not in col_of:
            continue
        if (exclude is not None and pair in exclude) or (only is not None and pair not in only):
            continue
        out[row_of[r.artist], col_of[r.tag]] = 1.0
    return out


def load_hetrec_tags(
    path: Path,
    *,
    leak_free: bool,
    min_count: int = 5,
    time_rule: TimeRule = "earliest",
    min_tag_count: int = S3REC_MIN_TAG_COUNT,
    core_only: bool = False,
) -> Dataset:
    """The HetRec Last.fm tagging log as an S3-Rec-style leave-last-out dataset with a multi-hot
    tag matrix; see the module docstring for every step and option."""
    rows = read_tag_assignments(path)
    seqs = k_core(user_sequences(pair_dates(rows, time_rule)), min_count)
    user_ids = sorted(seqs, key=int)
    item_index: dict[str, int] = {}
    for u in user_ids:
        for a in seqs[u]:
            item_index.setdefault(a, len(item_index))
    item_ids = list(item_index)
    raw_seqs = [seqs[u] for u in user_ids]
    name = f"hetrec-{time_rule}-{'leakfree' if leak_free else 'leaky'}"
    data = split_leave_last_out(
        name,
        [[item_index[a] for a in s] for s in raw_seqs],
        len(item_ids),
        item_ids,
        user_ids,
    )
    exclude = held_out_pairs(user_ids, raw_seqs) if leak_free else None
    only = {(u, a) for u, s in seqs.items() for a in s} if core_only else None
    content = tag_matrix(rows, item_ids, frequent_tags(rows, min_tag_count), exclude, only)
    return replace(data, content=content)
