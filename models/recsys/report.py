"""`resonate eval`: train and evaluate models on one benchmark, show a progress bar, print the
seed paper's Table 2 layout and write JSON.

A benchmark path is a file (one Last.fm file, one 30Music slice, one interactions log) or a
directory: ``lastfm-s3rec/`` means its ``LastFM.txt``, a 30Music directory means every
``*.txt`` slice, each evaluated separately and then pooled over users (``--quick`` keeps only
the first slice, the CI setting).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from models.recsys.evaluate import TABLE_COLUMNS, run_eval
from models.recsys.metrics import summarize_all

Cases = dict[str, tuple[dict[str, np.ndarray], list[int]]]


def benchmark_files(dataset: str, path: Path, quick: bool = False) -> list[Path]:
    """The files a benchmark path stands for (see the module docstring)."""
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if path.is_file():
        return [path]
    if dataset == "lastfm":
        return [path / "LastFM.txt"]
    files = sorted(p for p in path.glob("*.txt") if p.is_file())
    if not files:
        raise FileNotFoundError(f"no *.txt benchmark files in {path}")
    return files[:1] if quick else files


def _stacked(cases: Sequence[Cases], name: str) -> tuple[dict[str, np.ndarray], list[int]]:
    """One model's per-case metrics of several benchmarks concatenated, and the case users
    made distinct across benchmarks (users of different files are different users)."""
    per_case: dict[str, list[np.ndarray]] = {}
    groups: list[np.ndarray] = []
    offset = 0
    for part in cases:
        metrics, users = part[name]
        for k, v in metrics.items():
            per_case.setdefault(k, []).append(v)
        groups.append(np.asarray(users) + offset)
        offset += max(users) + 1
    return {k: np.concatenate(v) for k, v in per_case.items()}, list(np.concatenate(groups))


def pool(results: Sequence[dict[str, Any]], cases: Sequence[Cases]) -> dict[str, Any]:
    """Several benchmarks pooled over users: each benchmark's per-user means concatenated
    (users of different files are different users), CI over all of them."""
    out: dict[str, Any] = {
        "dataset": results[0]["dataset"] + " (pooled)",
        "n_items": sum(r["n_items"] for r in results),
        "n_users": sum(r["n_users"] for r in results),
        "n_test_cases": sum(r["n_test_cases"] for r in results),
        "exclude_history": results[0]["exclude_history"],
        "seeds": results[0]["seeds"],
        "protocol": results[0].get("protocol", "full"),
        "models": {},
    }
    for name in results[0]["models"]:
        per_case, groups = _stacked(cases, name)
        summ = summarize_all(per_case, groups=groups)
        out["models"][name] = {
            "metrics": {k: {"mean": s.mean, "ci95": s.ci95, "n": s.n} for k, s in summ.items()}
        }
    return out


def paired(cases: Sequence[Cases], a: str, b: str) -> dict[str, dict[str, float]]:
    """Paired difference ``a - b`` per metric over the same users (per-user means first),
    pooled over ``cases`` of several benchmarks: mean, 95% CI and n. Tighter than comparing
    two marginal CIs because user difficulty cancels."""
    ca, groups = _stacked(cases, a)
    cb, _ = _stacked(cases, b)
    summ = summarize_all({k: ca[k] - cb[k] for k in ca}, groups=groups)
    return {k: {"mean": v.mean, "ci95": v.ci95, "n": v.n} for k, v in summ.items()}


def _rows(
    results: dict[str, Any], columns: Sequence[str], bold: str, sep: str
) -> list[tuple[str, list[str]]]:
    """Per model the ``mean<sep>ci`` cells, the best mean of each column formatted ``bold``."""
    models = results["models"]
    best = {c: max(m["metrics"][c]["mean"] for m in models.values()) for c in columns}
    rows = []
    for name, m in models.items():
        cells = []
        for c in columns:
            v = m["metrics"][c]
            cell = f"{v['mean']:.4f}{sep}{v['ci95']:.4f}"
            cells.append(bold.format(cell) if v["mean"] == best[c] else cell)
        rows.append((name, cells))
    return rows


def table(results: dict[str, Any], columns: Sequence[str] = TABLE_COLUMNS) -> Table:
    """Rows = models, columns = metrics as ``mean ± CI95``, best mean per column in bold."""
    title = (
        f"{results['dataset']}: {results['n_test_cases']} test cases, {results['n_items']} items,"
        f" seeds {','.join(str(s) for s in results['seeds'])}, "
        f"{results.get('protocol', 'full')} ranking"
    )
    t = Table(title=title)
    t.add_column("Model")
    for c in columns:
        t.add_column(c.replace("MAP@20", "MAP"), justify="right")
    for name, cells in _rows(results, columns, "[bold]{}[/bold]", "±"):
        t.add_row(name, *cells)
    return t


def markdown(results: dict[str, Any], columns: Sequence[str] = TABLE_COLUMNS) -> str:
    """The same table as GitHub Markdown (for docs/results.md), best mean per column bold."""
    lines = ["| Model | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, cells in _rows(results, columns, "**{}**", " ± "):
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def evaluate(
    *,
    dataset: str,
    path: Path,
    models: list[str],
    seeds: list[int],
    quick: bool = False,
    sampled: int = 0,
    out: Path | None = None,
    markdown_out: Path | None = None,
    cache_dir: Path | None = None,
    max_seconds: float = 0.0,
    compare: Sequence[tuple[str, str]] = (),
    console: Console | None = None,
) -> dict[str, Any]:
    """Run every (file, model, seed), print one table per file (and the pooled table when
    there are several) and write ``{"benchmarks": [...], "pooled": ...}`` to ``out``."""
    # Not a terminal (CI logs, pipes): wide enough for the eight columns on one line each.
    console = console or Console(width=None if Console().is_terminal else 150)
    files = benchmark_files(dataset, path, quick)
    results: list[dict[str, Any]] = []
    cases: list[Cases] = []
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("training", total=len(files) * len(models) * len(seeds))

        def step(name: str, seed: int) -> None:
            bar.update(task, advance=1, description=f"{name} seed {seed} done")

        for f in files:
            bar.update(task, description=f"{f.name}")
            part: Cases = {}
            res = run_eval(
                dataset,
                f,
                models,
                seeds,
                quick,
                max_seconds=max_seconds,
                cache_dir=cache_dir,
                progress=step,
                sampled=sampled,
                cases_out=part,
            )
            results.append(res)
            cases.append(part)
    for res in results:
        console.print(table(res))
    report: dict[str, Any] = {"benchmarks": results}
    if len(results) > 1:
        report["pooled"] = pool(results, cases)
        console.print(table(report["pooled"]))
    if compare:
        report["paired"] = {f"{a} - {b}": paired(cases, a, b) for a, b in compare}
        for name, diff in report["paired"].items():
            cols = "  ".join(
                f"{c} {diff[c]['mean']:+.4f}±{diff[c]['ci95']:.4f}" for c in TABLE_COLUMNS
            )
            console.print(f"paired {name} (n={diff['NDCG@10']['n']} users): {cols}")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2))
    if markdown_out is not None:
        parts = [*results, *([report["pooled"]] if "pooled" in report else [])]
        md = [
            f"**{r['dataset']}**"
            + (f" `{Path(r['path']).name}`" if "path" in r else "")
            + f", {r['n_test_cases']} test cases, {r.get('protocol', 'full')} ranking"
            + f"\n\n{markdown(r)}"
            for r in parts
        ]
        markdown_out.write_text("\n".join(md))
    return report
