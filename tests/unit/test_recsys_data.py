"""Splits of tiny synthetic logs: no future event leaks into training or histories."""

from __future__ import annotations

from pathlib import Path

from models.recsys.data import Event, load_30music, load_lastfm, split_time


def test_lastfm_leave_last_out(tmp_path: Path) -> None:
    f = tmp_path / "LastFM.txt"
    f.write_text("1 1 2 3 4 5\n2 10 2 7\n")
    d = load_lastfm(f)
    assert d.n_items == 7 and d.item_ids == ["1", "2", "3", "4", "5", "7", "10"]
    idx = {raw: k for k, raw in enumerate(d.item_ids)}
    u0 = [idx[i] for i in "1 2 3 4 5".split()]
    assert d.train[0] == u0[:3]
    assert d.valid[0].history == u0[:3] and d.valid[0].target == u0[3]
    assert d.test[0].history == u0[:4] and d.test[0].target == u0[4]
    assert d.train[1] == [idx["10"]] and d.test[1].target == idx["7"]
    for case in d.valid + d.test:
        # training never contains the user's held-out events
        assert case.target not in d.train[case.user] or case.target in case.history
    assert d.exclude_history


def _log() -> list[Event]:
    # times 0..100; cutoff at 80. user a/b plenty of training, user c only in test.
    ev = [
        Event("a", "s1", "x", 0),
        Event("a", "s1", "y", 10),
        Event("b", "s2", "x", 20),
        Event("b", "s2", "y", 30),
        Event("a", "s3", "z", 40),  # z has support 1 -> dropped
        Event("b", "s4", "x", 50),
        Event("a", "s3", "x", 60),
        Event("b", "s4", "y", 70),
        Event("a", "s5", "y", 85),
        Event("a", "s5", "z", 90),  # unknown item in test -> dropped
        Event("b", "s6", "x", 95),
        Event("c", "s7", "x", 97),  # unknown user -> dropped
        Event("a", "s5", "x", 100),
    ]
    return ev


def test_time_split_no_leak() -> None:
    evs = _log()
    d = split_time(list(reversed(evs)))  # input order must not matter
    assert d.item_ids == ["x", "y"] and d.user_ids == ["a", "b"]
    x, y = 0, 1
    # a's training events: x y x (z dropped); b's: x y x y
    assert d.valid[0].history == [x, y] and d.valid[0].target == x
    assert d.train[0] == [x, y] and d.train[1] == [x, y, x]
    assert [(c.user, c.target) for c in d.test] == [(0, y), (1, x), (0, x)]
    assert d.test[0].history == [x, y, x]
    assert d.test[2].history == [x, y, x, y]  # earlier test event of a is history
    # no training sequence is longer than the events before the cutoff
    n_train_events = sum(len(s) for s in d.train) + len(d.valid)
    assert n_train_events == 7
    assert sorted(len(s) for s in d.sessions()) == [
        1,
        2,
        2,
    ]  # s3 of a and s4 of b lose their valid event
    assert not d.exclude_history


def test_load_30music_tsv(tmp_path: Path) -> None:
    f = tmp_path / "slice.txt"
    lines = ["UserId\tSessionId\tItemId\tTime\tArtistId"]
    lines += [f"{e.user}\t{e.session}\t{e.item}\t{e.time}\t1" for e in _log()]
    f.write_text("\n".join(lines) + "\n")
    d = load_30music(f)
    assert d.n_items == 2 and len(d.test) == 3
    # Every item carries its artist as one-hot content (both items here are by artist "1").
    assert d.content is not None and d.content.shape == (2, 1) and d.content.sum() == 2
