"""`resonate eval`: every 30Music slice of a directory evaluated, pooled over users, cached."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from infra.cli import app
from models.recsys.report import benchmark_files

BLOCK, N_BLOCKS = 8, 4


def write_slice(path: Path, seed: int) -> None:
    """A 30Music-format slice: each user walks i -> i+1 inside one block of items (one artist
    per block), one play per hour, so the time split leaves later steps as test cases."""
    rng = np.random.default_rng(seed)
    lines = ["UserId\tSessionId\tItemId\tTime\tArtistId"]
    for u in range(40):
        block, start = u % N_BLOCKS, int(rng.integers(BLOCK))
        for t in range(12):
            item = block * BLOCK + (start + t) % BLOCK
            lines.append(f"u{u}\ts{u}-{t // 6}\ti{item}\t{1_000_000 + 3600 * t + u}\ta{block}")
    path.write_text("\n".join(lines) + "\n")


def test_eval_command_pools_slices_and_reuses_cached_runs(tmp_path: Path) -> None:
    data = tmp_path / "30music"
    data.mkdir()
    for k in range(2):
        write_slice(data / f"slice.{k}.txt", seed=k)
    assert [p.name for p in benchmark_files("30music", data, quick=True)] == ["slice.0.txt"]
    out, cache = tmp_path / "res.json", tmp_path / "cache"
    args = ["eval", "--dataset", "30music", "--path", str(data), "--models", "random,itemknn"]
    args += ["--seeds", "0,1", "--out", str(out), "--cache-dir", str(cache)]
    args += ["--markdown", str(tmp_path / "res.md"), "--compare", "itemknn:random"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert len(report["benchmarks"]) == 2
    pooled = report["pooled"]["models"]
    n_users = sum(b["models"]["itemknn"]["metrics"]["NDCG@10"]["n"] for b in report["benchmarks"])
    assert pooled["itemknn"]["metrics"]["NDCG@10"]["n"] == n_users
    assert pooled["itemknn"]["metrics"]["HitRate@20"]["mean"] > 0.9
    assert pooled["random"]["metrics"]["HitRate@20"]["mean"] < 0.9
    assert "Recall@10" in result.output and "itemknn" in result.output
    diff = report["paired"]["itemknn - random"]["HitRate@20"]
    assert diff["n"] == n_users and diff["mean"] == pytest.approx(
        pooled["itemknn"]["metrics"]["HitRate@20"]["mean"]
        - pooled["random"]["metrics"]["HitRate@20"]["mean"]
    )
    assert 0 < diff["ci95"] < pooled["random"]["metrics"]["HitRate@20"]["ci95"] * 3
    md = (tmp_path / "res.md").read_text()
    assert md.count("| Model | Recall@10 |") == 3  # two slices and the pooled table
    assert "| itemknn | **" in md  # itemknn is best in the first column
    assert len(list(cache.glob("*.npz"))) == 2 * 2 * 2  # slices x models x seeds
    # A second run with the same cache trains nothing: identical runs, timings included.
    again = tmp_path / "again.json"
    args[args.index(str(out))] = str(again)
    assert CliRunner().invoke(app, args).exit_code == 0
    first, second = report["benchmarks"][0], json.loads(again.read_text())["benchmarks"][0]
    assert first["models"]["itemknn"]["runs"] == second["models"]["itemknn"]["runs"]


def test_eval_command_rejects_unknown_models(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["eval", "--dataset", "30music", "--path", str(tmp_path), "--models", "nope"]
    )
    assert result.exit_code != 0 and "nope" in result.output
