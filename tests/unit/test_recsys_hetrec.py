"""HetRec tag-assignment loader: ordering, iterative k-core, split, and the leak-free tag matrix."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.recsys.data import Dataset
from models.recsys.hetrec import (
    TimeRule,
    frequent_tags,
    load_hetrec_tags,
    read_tag_assignments,
)

# userID artistID tagID day month year. With min_count=3: user 4 (2 artists) and artist 99
# (1 user) go in round 1; artist 40 (users 1, 2, 4) only falls to 2 users in round 2.
ROWS = """\
1 10 6 1 3 2009
1 10 7 1 2 2009
1 20 2 1 2 2009
1 40 1 1 5 2009
1 99 8 1 4 2009
1 100 1 1 1 2009
1 100 3 1 1 2009
2 10 1 1 5 2008
2 20 1 1 6 2008
2 40 1 1 8 2008
2 100 3 1 7 2008
3 100 5 1 1 2010
3 20 1 1 1 2010
3 10 9 1 2 2010
4 10 4 1 1 2011
4 40 1 1 1 2011
"""


def _write(tmp_path: Path) -> Path:
    f = tmp_path / "user_taggedartists.dat"
    lines = ["userID\tartistID\ttagID\tday\tmonth\tyear"]
    lines += ["\t".join(r.split()) for r in ROWS.splitlines()]
    f.write_text("\n".join(lines) + "\n")
    return f


def _load(
    tmp_path: Path, leak_free: bool, time_rule: TimeRule = "earliest", core_only: bool = False
) -> Dataset:
    return load_hetrec_tags(
        _write(tmp_path),
        leak_free=leak_free,
        min_count=3,
        time_rule=time_rule,
        min_tag_count=1,
        core_only=core_only,
    )


def _raw_seqs(d: Dataset) -> dict[str, list[str]]:
    return {d.user_ids[c.user]: [d.item_ids[i] for i in c.history + [c.target]] for c in d.test}


def _tags(d: Dataset) -> dict[str, set[int]]:
    assert d.content is not None
    return {a: {int(t) + 1 for t in np.nonzero(d.content[k])[0]} for k, a in enumerate(d.item_ids)}


def test_order_kcore_and_split(tmp_path: Path) -> None:
    d = _load(tmp_path, leak_free=False)
    # k-core is iterated: 99 and user 4 go first, then 40; items numbered by first appearance.
    assert d.user_ids == ["1", "2", "3"]
    assert d.item_ids == ["100", "10", "20"]
    # earliest date per pair: user 1's artist 10 counts from 2009-02 (its tag-7 row), and
    # ties (10 and 20 in 2009-02; 100 and 20 in 2010-01) go by numeric artist id, not file order.
    assert _raw_seqs(d) == {
        "1": ["100", "10", "20"],
        "2": ["10", "20", "100"],
        "3": ["20", "100", "10"],
    }
    idx = {a: k for k, a in enumerate(d.item_ids)}
    assert d.train == [[idx["100"]], [idx["10"]], [idx["20"]]]
    assert [c.target for c in d.valid] == [idx["10"], idx["20"], idx["100"]]
    assert [c.history for c in d.valid] == d.train
    assert [c.target for c in d.test] == [idx["20"], idx["100"], idx["10"]]
    assert d.test[0].history == [idx["100"], idx["10"]]


def test_first_row_rule(tmp_path: Path) -> None:
    # S3-Rec dates a pair by its first row in file order: (1, 10) -> 2009-03, after 20.
    d = _load(tmp_path, leak_free=False, time_rule="first_row")
    assert _raw_seqs(d)["1"] == ["100", "20", "10"]


def test_leak_free_drops_only_held_out_tags(tmp_path: Path) -> None:
    leaky = _load(tmp_path, leak_free=False)
    clean = _load(tmp_path, leak_free=True)
    assert leaky.content is not None and clean.content is not None
    assert leaky.content.shape == clean.content.shape == (3, 9)  # same tag columns 1..9
    # every assignment, also user 4's (outside the k-core): tag 4 on artist 10
    assert _tags(leaky) == {"10": {1, 4, 6, 7, 9}, "20": {1, 2}, "100": {1, 3, 5}}
    # held out: (1,10) (1,20) (2,20) (2,100) (3,100) (3,10). Tags only they carry disappear;
    # tag 3 on 100 stays (also on training pair (1,100)), tag 1 on 20 stays (pair (3,20)).
    assert _tags(clean) == {"10": {1, 4}, "20": {1}, "100": {1, 3}}
    # sequences do not depend on the content
    assert clean.train == leaky.train and clean.test == leaky.test
    strict = _load(tmp_path, leak_free=True, core_only=True)
    assert _tags(strict) == {"10": {1}, "20": {1}, "100": {1, 3}}


def test_frequent_tags(tmp_path: Path) -> None:
    rows = read_tag_assignments(_write(tmp_path))
    assert frequent_tags(rows, 2) == ["1", "3"]
    d = load_hetrec_tags(_write(tmp_path), leak_free=True, min_count=3, min_tag_count=2)
    assert d.content is not None and d.content.shape == (3, 2)
