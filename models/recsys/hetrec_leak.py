"""How much of ContentKNN's Last.fm score is tag leakage? Rebuild S3-Rec's Last.fm from HetRec.

``python -m models.recsys.hetrec_leak /path/user_taggedartists.dat --s3rec /path/LastFM.txt
--out docs/results/hetrec_leak.json`` evaluates ContentKNN and ItemKNN (one seed, full ranking,
95% CIs over users) on S3-Rec's file and on ``load_hetrec_tags`` rebuilds with the leaky and the
leak-free tag matrix, for both pair-date rules; it also reports how closely the rebuild matches
S3-Rec's sequences and how often a test target carries a tag that only the test interaction
itself put there. See ``models/recsys/hetrec.py`` for the recipe.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from models.recsys.baselines import ItemKNN, Recommender
from models.recsys.contentknn import ContentKNN
from models.recsys.data import Dataset, load_lastfm
from models.recsys.evaluate import evaluate_model
from models.recsys.hetrec import (
    S3REC_MIN_TAG_COUNT,
    TagAssignment,
    TimeRule,
    frequent_tags,
    load_hetrec_tags,
    read_tag_assignments,
    tag_matrix,
)
from models.recsys.metrics import summarize_all

log = logging.getLogger(__name__)
COLUMNS: tuple[str, ...] = ("HitRate@10", "NDCG@10", "HitRate@20", "NDCG@20")
RULES: tuple[TimeRule, ...] = ("first_row", "earliest")


def sizes(data: Dataset) -> dict[str, int]:
    """Users, items, interactions, tag columns and non-zeros of the tag matrix."""
    content = data.content if data.content is not None else np.zeros((0, 0))
    return {
        "users": data.n_users,
        "items": data.n_items,
        "interactions": sum(len(c.history) + 1 for c in data.test),
        "tag_columns": int(content.shape[1]),
        "tag_nonzeros": int((content > 0).sum()),
    }


def agreement(ref: Dataset, ours: Dataset) -> dict[str, int]:
    """Users whose whole sequence / valid target / test target equal S3-Rec's, users taken in
    the same order, S3-Rec item ids matched to ours by the set of users holding them (items
    held by exactly the same users stay ambiguous and match any member of their set)."""
    if ref.n_users != ours.n_users:
        return {"users": 0}
    full = [c.history + [c.target] for c in ref.test]
    mine = [c.history + [c.target] for c in ours.test]
    cand: dict[int, set[int]] = {}
    for r, o in zip(full, mine, strict=True):
        for i in r:
            cand[i] = cand[i] & set(o) if i in cand else set(o)
    same = [
        [b in cand[a] for a, b in zip(r, o, strict=False)] for r, o in zip(full, mine, strict=True)
    ]
    return {
        "users": ref.n_users,
        "same_length": sum(len(r) == len(o) for r, o in zip(full, mine, strict=True)),
        "same_sequence": sum(
            len(r) == len(o) and all(s) for r, o, s in zip(full, mine, same, strict=True)
        ),
        "same_valid_target": sum(s[-2] for s in same),
        "same_test_target": sum(s[-1] for s in same),
        "ambiguous_items": sum(len(c) != 1 for c in cand.values()),
    }


def private_tags(
    rows: Sequence[TagAssignment], data: Dataset, min_tag_count: int
) -> dict[str, float]:
    """Share of test cases whose target carries a (kept) tag assigned to that artist by no one
    but the test user, i.e. only by the held-out interaction itself; and the share where such a
    tag is also one the user put on a history item (what a content model can exploit)."""
    cols = set(frequent_tags(rows, min_tag_count))
    assigners: dict[tuple[str, str], set[str]] = defaultdict(set)
    pair_tags: dict[tuple[str, str], set[str]] = defaultdict(set)
    for r in rows:
        if r.tag in cols:
            assigners[(r.artist, r.tag)].add(r.user)
            pair_tags[(r.user, r.artist)].add(r.tag)
    has = on_hist = 0
    for c in data.test:
        u, a = data.user_ids[c.user], data.item_ids[c.target]
        private = {t for t in pair_tags[(u, a)] if assigners[(a, t)] == {u}}
        hist_tags = set().union(*(pair_tags[(u, data.item_ids[i])] for i in c.history))
        has += bool(private)
        on_hist += bool(private & hist_tags)
    n = len(data.test)
    return {
        "test_cases": n,
        "target_has_private_tag": has / n,
        "private_tag_on_history": on_hist / n,
    }


def run_model(name: str, data: Dataset, seed: int) -> dict[str, np.ndarray]:
    """Fit ContentKNN or ItemKNN (default configs) and return its per-case test metrics."""
    model: Recommender = ContentKNN() if name == "contentknn" else ItemKNN()
    model.fit(data)
    return evaluate_model(model, data, seed)


def as_dict(per_case: dict[str, np.ndarray], users: list[int]) -> dict[str, dict[str, float]]:
    """Mean, 95% CI half-width and n (over users) of the table's metrics."""
    s = summarize_all({k: per_case[k] for k in COLUMNS}, users)
    return {k: {"mean": v.mean, "ci95": v.ci95, "n": v.n} for k, v in s.items()}


def main(
    path: Annotated[Path, typer.Argument(help="HetRec user_taggedartists.dat")],
    out: Annotated[Path, typer.Option(help="JSON file to write")],
    s3rec: Annotated[Path | None, typer.Option(help="S3-Rec LastFM.txt")] = None,
    seed: Annotated[int, typer.Option(help="Tie-breaking seed of the ranking")] = 0,
) -> None:
    """Evaluate ContentKNN and ItemKNN on S3-Rec's Last.fm and on leaky / leak-free rebuilds."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    rows = read_tag_assignments(path)
    datasets: dict[str, Dataset] = {}
    if s3rec is not None:
        datasets["s3rec"] = load_lastfm(s3rec)
    for rule in RULES:
        for leak_free in (False, True):
            d = load_hetrec_tags(path, leak_free=leak_free, time_rule=rule)
            datasets[f"{rule}/{'leakfree' if leak_free else 'leaky'}"] = d
    datasets["first_row/leakfree_train_pairs_only"] = load_hetrec_tags(
        path, leak_free=True, time_rule="first_row", core_only=True
    )
    # The valid interaction is in every test history: only the test pair's tags are unknowable.
    ref = datasets["first_row/leaky"]
    test_pairs = {(ref.user_ids[c.user], ref.item_ids[c.target]) for c in ref.test}
    tags = frequent_tags(rows, S3REC_MIN_TAG_COUNT)
    datasets["first_row/leakfree_test_pairs_only"] = replace(
        ref,
        name="hetrec-first_row-testfree",
        content=tag_matrix(rows, ref.item_ids, tags, test_pairs),
    )
    report: dict[str, Any] = {
        "recipe": (
            "distinct (user, artist) pairs of user_taggedartists.dat; pair date = date of the "
            "pair's first row in file order (first_row, S3-Rec) or its earliest date (earliest); "
            "per-user order (date, numeric artist id); iterative 5-core on users and items; "
            "S3-Rec leave-last-out split; tags = multi-hot over tags with >= "
            f"{S3REC_MIN_TAG_COUNT} assignments in the raw file, rows from every user's "
            "assignments (leaky) or all but each k-core user's valid/test pair's (leakfree); "
            "leakfree_train_pairs_only keeps only assignments of k-core training pairs; "
            "leakfree_test_pairs_only drops only the test pairs' assignments (valid pair kept)"
        ),
        "seed": seed,
        "models": {"contentknn": "ContentKNNConfig() (tf-idf)", "itemknn": "ItemKNNConfig()"},
        "sizes": {k: sizes(d) for k, d in datasets.items()},
        "results": {},
        "paired_differences": {},
    }
    if "s3rec" in datasets:
        report["agreement_with_s3rec"] = {
            r: agreement(datasets["s3rec"], datasets[f"{r}/leaky"]) for r in RULES
        }
    report["leak"] = {}
    for rule in RULES:
        leaky, clean = datasets[f"{rule}/leaky"], datasets[f"{rule}/leakfree"]
        assert leaky.content is not None and clean.content is not None
        targets = np.asarray([c.target for c in leaky.test])
        changed = (leaky.content[targets] != clean.content[targets]).any(axis=1)
        report["leak"][rule] = {
            **private_tags(rows, leaky, S3REC_MIN_TAG_COUNT),
            "target_row_changed_by_leak_free": float(changed.mean()),
        }
    per_case: dict[tuple[str, str], dict[str, np.ndarray]] = {}
    for key, data in datasets.items():
        users = [c.user for c in data.test]
        report["results"][key] = {}
        models = ("contentknn",) if key.endswith("pairs_only") else ("contentknn", "itemknn")
        for m in models:
            log.info("%s on %s", m, key)
            per_case[(key, m)] = run_model(m, data, seed)
            report["results"][key][m] = as_dict(per_case[(key, m)], users)
        if "itemknn" in models:
            diff = {
                k: per_case[(key, "contentknn")][k] - per_case[(key, "itemknn")][k] for k in COLUMNS
            }
            report["paired_differences"][f"{key}: contentknn - itemknn"] = as_dict(diff, users)
    for rule in RULES:
        users = [c.user for c in datasets[f"{rule}/leaky"].test]
        a, b = (
            per_case[(f"{rule}/leaky", "contentknn")],
            per_case[(f"{rule}/leakfree", "contentknn")],
        )
        diff = {k: a[k] - b[k] for k in COLUMNS}
        report["paired_differences"][f"{rule}: contentknn leaky - leakfree"] = as_dict(diff, users)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    log.info("wrote %s", out)
    print(format_table(report))


def format_table(report: dict[str, Any]) -> str:
    """Plain-text table of the results (mean ± 95% CI)."""
    head = f"{'dataset':38} {'model':11}" + "".join(f"{c:>16}" for c in COLUMNS)
    lines = [head]
    for key, models in report["results"].items():
        for m, res in models.items():
            cells = "".join(f"{res[c]['mean']:>9.4f}±{res[c]['ci95']:.4f}" for c in COLUMNS)
            lines.append(f"{key:38} {m:11}{cells}")
    for key, res in report["paired_differences"].items():
        cells = "".join(f"{res[c]['mean']:>+9.4f}±{res[c]['ci95']:.4f}" for c in COLUMNS)
        lines.append(f"{'diff ' + key:50}{cells}")
    return "\n".join(lines)


if __name__ == "__main__":
    typer.run(main)
