"""Skip-aware event logs: parsing, the positive-only leave-last-out split, the skip-unaware
views, the item side information of Last.fm, and typed training on the synthetic log."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from models.recsys.data import (
    LIKE,
    PLAY,
    SKIP,
    drop_skips,
    load_events,
    load_item_attributes,
    load_lastfm,
    skips_as_plays,
)
from models.recsys.evaluate import evaluate_model
from models.recsys.gru4rec import GRU4RecConfig
from models.recsys.sasrec import SASRecConfig
from models.recsys.synth_events import SynthConfig, write_events
from models.recsys.train import GRU4RecRec, SASRecRec, TrainConfig


def _write(path: Path, rows: list[tuple[str, str, str, str, int]]) -> None:
    with path.open("w") as fh:
        for eid, typ, user, track, minute in rows:
            t = f"2026-01-01T00:{minute:02d}:00+00:00"
            fh.write(
                json.dumps(
                    {
                        "event_id": eid,
                        "type": typ,
                        "user_id": user,
                        "track_id": track,
                        "occurred_at": t,
                        "listened_ms": 1000,
                    }
                )
                + "\n"
            )


def test_load_events_split(tmp_path: Path) -> None:
    f = tmp_path / "ev.jsonl"
    rows = [
        ("1", "play", "a", "x", 0),
        ("2", "skip", "a", "y", 1),
        ("3", "like", "a", "z", 2),
        ("3", "like", "a", "z", 2),  # replayed event id: counted once
        ("4", "play", "a", "x", 4),
        ("5", "skip", "a", "w", 5),
        ("6", "play", "a", "v", 6),
        ("7", "skip", "a", "q", 7),  # trailing skip: never a target, not in any history
        ("8", "play", "b", "x", 0),  # user b: only 2 positives -> dropped
        ("9", "skip", "b", "y", 1),
        ("10", "play", "b", "z", 2),
    ]
    _write(f, rows[::-1])  # file order must not matter, occurred_at does
    d = load_events(f)
    assert d.user_ids == ["a"] and d.has_types and not d.exclude_history
    idx = {raw: k for k, raw in enumerate(d.item_ids)}
    assert d.train[0] == [idx[i] for i in "xyz"]
    assert d.train_types[0] == [PLAY, SKIP, LIKE]
    v, t = d.valid[0], d.test[0]
    assert v.target == idx["x"] and v.history == d.train[0]
    assert t.target == idx["v"] and t.history == [idx[i] for i in "xyzxw"]
    assert t.history_types == [PLAY, SKIP, LIKE, PLAY, SKIP]
    assert "q" in d.item_ids  # the catalogue knows it, but no case targets it

    dropped = drop_skips(d)
    assert dropped.train[0] == [idx[i] for i in "xz"] and not dropped.has_types
    assert dropped.test[0].history == [idx[i] for i in "xzx"]
    assert dropped.test[0].target == t.target
    plays = skips_as_plays(d)
    assert plays.test[0].history == t.history and plays.test[0].history_types is None


def test_synthetic_targets_are_never_skips(tmp_path: Path) -> None:
    f = tmp_path / "synth.jsonl"
    write_events(f, SynthConfig(n_users=40, seed=1))
    raw = [json.loads(line) for line in f.read_text().splitlines()]
    per_user: dict[str, list[tuple[str, str]]] = {}
    for r in raw:  # the generator writes each user's events in time order
        per_user.setdefault(r["user_id"], []).append((r["track_id"], r["type"]))
    d = load_events(f)
    assert 0.2 < sum(r["type"] == "skip" for r in raw) / len(raw) < 0.8
    for case in d.valid + d.test:
        events = per_user[d.user_ids[case.user]]
        # The target is the event right after the history, and it is a play or a like.
        track, typ = events[len(case.history)]
        assert track == d.item_ids[case.target] and typ != "skip"
        assert [d.item_ids[i] for i in case.history] == [t for t, _ in events[: len(case.history)]]
        assert case.history_types is not None and len(case.history_types) == len(case.history)


def test_lastfm_attributes(tmp_path: Path) -> None:
    (tmp_path / "LastFM.txt").write_text("1 1 2 3 4\n2 2 3 4\n")
    (tmp_path / "LastFM_item2attributes.json").write_text(
        json.dumps({"1": [7, 7, 9], "2": [9], "3": [], "99": [5]})
    )
    d = load_lastfm(tmp_path / "LastFM.txt")
    assert d.content is not None and d.content.shape == (4, 2)  # tags 7 and 9 only
    np.testing.assert_array_equal(d.content, [[1, 1], [0, 1], [0, 0], [0, 0]])
    assert load_lastfm(tmp_path / "LastFM.txt", content=False).content is None
    m = load_item_attributes(tmp_path / "LastFM_item2attributes.json", ["2", "99"])
    np.testing.assert_array_equal(m, [[0, 1], [1, 0]])  # columns: tags 5, 9


def test_typed_models_train_and_use_types(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    f = tmp_path / "synth.jsonl"
    write_events(f, SynthConfig(n_users=80))
    d = load_events(f)
    tc = TrainConfig(epochs=4, batch_size=64, lr=5e-3, eval_every=2)
    for model in (
        SASRecRec(SASRecConfig(max_len=20, hidden=16, n_layers=1), tc),
        GRU4RecRec(GRU4RecConfig(max_len=20, hidden=16, gru_hidden=16), tc),
    ):
        model.fit(d)
        assert model.typed
        res = evaluate_model(model, d, seed=0)
        assert res["HitRate@10"].shape == (len(d.test),)
        h, ty = d.test[0].history, d.test[0].history_types
        assert ty is not None
        flipped = [SKIP if t != SKIP else PLAY for t in ty]
        # The type embedding changes the prediction.
        assert not np.allclose(model.score([h], types=[ty]), model.score([h], types=[flipped]))


def test_skip_aware_beats_skips_as_plays(tmp_path: Path) -> None:
    # On the synthetic log a skip means "not this cluster now". Treating skips as plays makes
    # the model chase off-taste tracks; the typed model learns to discount them.
    torch.set_num_threads(1)
    f = tmp_path / "synth.jsonl"
    write_events(f, SynthConfig(n_users=200, seed=3))
    typed = load_events(f)
    cfg = GRU4RecConfig(max_len=30, hidden=32, gru_hidden=32)
    tc = TrainConfig(epochs=12, batch_size=16, lr=5e-3, eval_every=4, seed=0)
    hr = {}
    for name, data in (("aware", typed), ("as_plays", skips_as_plays(typed))):
        model = GRU4RecRec(cfg, tc)
        model.fit(data)
        hr[name] = float(evaluate_model(model, data, seed=0)["NDCG@10"].mean())
    assert hr["aware"] > hr["as_plays"] + 0.03, hr


def test_sasrec_reads_skips_as_negative_evidence_not_as_context(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    f = tmp_path / "synth.jsonl"
    write_events(f, SynthConfig(n_users=60))
    d = load_events(f)
    model = SASRecRec(
        SASRecConfig(max_len=20, hidden=16, n_layers=1),
        TrainConfig(epochs=2, batch_size=64, lr=5e-3, eval_every=2),
    )
    model.fit(d)
    h = [3, 5, 7, 9]
    plays = [PLAY] * len(h)
    base = model.score([h], types=[plays])
    # After a trailing skip the prediction comes from the last positive event, whose state
    # neither attends to skips nor is moved by them: the scores are those without the skip ...
    for skipped in (1, 11, 42):
        np.testing.assert_allclose(
            model.score([[*h, skipped]], types=[[*plays, SKIP]]), base, atol=1e-5
        )
    # ... nor does it for a skip between plays (only the skip's own state sees it) ...
    a = model.score([[3, 1, 5, 7, 9]], types=[[PLAY, SKIP, *plays[1:]]])
    b = model.score([[3, 42, 5, 7, 9]], types=[[PLAY, SKIP, *plays[1:]]])
    np.testing.assert_allclose(a, b, atol=1e-5)
    # ... while which track was played does.
    assert not np.allclose(model.score([[*h, 11]], types=[[*plays, PLAY]]), base)
    assert not np.allclose(model.score([[3, 42, 5, 7, 9]], types=[[PLAY] * 5]), b)


def test_one_reader_two_views(tmp_path: Path) -> None:
    """Typed and positives views read the same events: bad lines skipped, replays once."""
    f = tmp_path / "ev.jsonl"
    rows = [
        ("1", "play", "a", "x", 0),
        ("2", "skip", "a", "y", 1),
        ("3", "like", "a", "z", 2),
        ("3", "like", "a", "z", 2),  # replayed event id: counted once in both views
        ("4", "play", "a", "x", 4),
        ("5", "play", "a", "v", 6),
    ]
    _write(f, rows)
    with f.open("a") as fh:
        fh.write("{not json\n")
    typed = load_events(f, view="typed")
    pos = load_events(f, view="positives")
    assert typed.test[0].target == typed.item_ids.index("v")
    assert [pos.item_ids[i] for i in pos.test[0].history] == ["x", "z", "x"]
    assert [pos.item_ids[i] for i in pos.train[0]] == ["x", "z"]
    assert "y" in typed.item_ids and "y" not in pos.item_ids  # only ever skipped
    assert pos.exclude_history and not typed.exclude_history
    with pytest.raises(ValueError):
        load_events(f, view="nope")  # type: ignore[arg-type]
