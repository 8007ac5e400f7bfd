"""Markdown of replay reports (``infra.replay.run.run_replay``): live beside offline."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from models.recsys.counterpart import VARIANTS
from models.recsys.prequential import METRICS

_LABELS = {
    "offline": "offline (tables' protocol)",
    "offline-excl": "offline, heard tracks excluded",
    "offline-excl-noaudio": "offline, heard excluded, no content",
    "offline-excl-noaudio-pools": "offline, heard excluded, no content, agent's pools",
    "offline-mix-noaudio": "offline `mix`, no content",
    "offline-mix-noaudio-pools": "offline `mix`, no content, agent's pools",
}

_SUMMARY = ("offline", "offline-excl", "offline-excl-noaudio")
"""The offline rows of the summary table's columns (every report has them)."""


def _fig(f: dict[str, Any]) -> str:
    return f"{f['mean']:.4f} ± {f['ci95']:.4f}"


def _ratio(r: dict[str, Any]) -> str:
    return f"{r['ratio']:.2f} [{r['low']:.2f}, {r['high']:.2f}]"


def table(report: dict[str, Any]) -> str:
    """One slice: the live row, the offline rows and the ratios."""
    lg, dr = report["log"], report["drive"]
    head = (
        f"**{report['slice']}**: {lg['scored_events']} scored events of "
        f"{lg['scored_listeners']} listeners ({lg['events']} events replayed, "
        f"{dr['seconds']:.0f} s; {dr['scored_stale']} scored events met a stale list, "
        f"{dr['scored_without_list']} no list)\n\n"
    )
    rows = ["| figure | " + " | ".join(METRICS) + " |", "|---" * (len(METRICS) + 1) + "|"]
    rows.append("| **live** | " + " | ".join(_fig(report["live"][m]) for m in METRICS) + " |")
    names = [n for n in VARIANTS if n in report["offline"]]  # older reports lack newer rows
    for name in names:
        off = report["offline"][name]
        rows.append(f"| {_LABELS[name]} | " + " | ".join(_fig(off[m]) for m in METRICS) + " |")
    for name in (n for n in names if n in report["ratio"]):  # the `mix` rows: kinds_table
        rat = report["ratio"][name]
        rows.append(
            f"| live / {_LABELS[name]} | " + " | ".join(_ratio(rat[m]) for m in METRICS) + " |"
        )
    return head + "\n".join(rows) + "\n" + kinds_table(report)


def kinds_table(report: dict[str, Any]) -> str:
    """Every kind of list beside its own counterparts (reports before kinds: nothing)."""
    kinds = report.get("kinds") or {}
    if not kinds:
        return ""
    rows = [
        "\n| kind | figure | " + " | ".join(METRICS) + " |",
        "|---" * (len(METRICS) + 2) + "|",
    ]
    for kind, k in kinds.items():
        rows.append(f"| `{kind}` | **live** | " + " | ".join(_fig(k["live"][m]) for m in METRICS))
        for name in k["counterparts"]:
            off = report["offline"][name]
            rows.append(
                f"| `{kind}` | {_LABELS[name]} | " + " | ".join(_fig(off[m]) for m in METRICS)
            )
            rat = k["ratio"][name]
            rows.append(
                f"| `{kind}` | live / that | " + " | ".join(_ratio(rat[m]) for m in METRICS)
            )
    return "\n".join(r if r.endswith("|") else r + " |" for r in rows) + "\n"


def kinds_summary(reports: Sequence[dict[str, Any]]) -> str:
    """HR@20 of each kind of list per slice and pooled: live, its counterparts, the ratios
    (the pooled ratio is the ratio of the pooled means, without a CI)."""
    rows = [
        "| slice | kind | listeners | live HR@20 | offline, same config | live / that "
        "| offline, agent's pools | live / that |",
        "|---" * 8 + "|",
    ]
    kinds = [k for k in reports[0].get("kinds", {})] if reports else []
    for kind in kinds:
        for r in reports:
            k = r["kinds"][kind]
            cells = [r["slice"], f"`{kind}`", str(k["live"]["HR@20"]["listeners"])]
            cells.append(_fig(k["live"]["HR@20"]))
            for name in k["counterparts"]:
                cells += [_fig(r["offline"][name]["HR@20"]), _ratio(k["ratio"][name]["HR@20"])]
            rows.append("| " + " | ".join(cells) + " |")
        if len(reports) > 1:
            live = pooled([r["kinds"][kind]["live"]["HR@20"] for r in reports])
            cells = ["pooled", f"`{kind}`", str(live["listeners"]), _fig(live)]
            for name in reports[0]["kinds"][kind]["counterparts"]:
                off = pooled([r["offline"][name]["HR@20"] for r in reports])
                cells += [_fig(off), f"{live['mean'] / off['mean']:.2f}"]
            rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def cold_start_line(report: dict[str, Any]) -> str:
    """New-track exposure in one sentence."""
    c = report["cold_start"]
    return (
        f"Cold start ({report['slice']}): {c['uploaded_tracks']} tracks new in the test period "
        f"uploaded as real clips; {c['test_lists_with_upload']} of {c['test_lists']} test-period "
        f"lists ({100 * c['share_of_lists_with_upload']:.1f}%) showed one, "
        f"{c['uploaded_tracks_shown']} distinct uploaded tracks shown; "
        f"{c['hits_on_uploaded_tracks']} of {c['plays_of_uploaded_tracks']} plays of them "
        "were in the list before."
    )


def pooled(figures: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Figures of disjoint listener sets combined: the listener-weighted mean, and a CI from
    each set's own variance (``ci95 = 1.96 sd / sqrt(n)``, so the pooled mean's variance is
    ``sum (n_i ci_i)^2 / N^2`` up to the 1.96^2); per-slice summaries are all a report keeps."""
    n = sum(f["listeners"] for f in figures)
    mean = sum(f["mean"] * f["listeners"] for f in figures) / n
    ci = math.sqrt(sum((f["listeners"] * f["ci95"]) ** 2 for f in figures)) / n
    return {"mean": mean, "ci95": ci, "listeners": n}


def summary(reports: Sequence[dict[str, Any]]) -> str:
    """One row per slice and a pooled row: live HR@20 beside the offline ones and the ratios
    (the pooled ratio is the ratio of the pooled means, without a CI)."""
    rows = [
        "| slice | listeners | live HR@20 | offline HR@20 | live / offline "
        "| offline, heard excluded | live / that | offline, heard excl., no content "
        "| live / that |",
        "|---" * 9 + "|",
    ]
    for r in reports:
        cells = [r["slice"], str(r["live"]["HR@20"]["listeners"]), _fig(r["live"]["HR@20"])]
        for name in _SUMMARY:
            cells += [_fig(r["offline"][name]["HR@20"]), _ratio(r["ratio"][name]["HR@20"])]
        rows.append("| " + " | ".join(cells) + " |")
    if len(reports) > 1:
        live = pooled([r["live"]["HR@20"] for r in reports])
        cells = ["pooled", str(live["listeners"]), _fig(live)]
        for name in _SUMMARY:
            off = pooled([r["offline"][name]["HR@20"] for r in reports])
            cells += [_fig(off), f"{live['mean'] / off['mean']:.2f}"]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def markdown(report: dict[str, Any]) -> str:
    """Everything of one replay as Markdown."""
    art = report.get("artifacts", {})
    naming = report.get("lists_naming", {})
    return (
        table(report)
        + "\n"
        + cold_start_line(report)
        + "\n\n"
        + f"Artifacts: fusion weights `{art.get('fusion_weights')}`, sequence model "
        f"`{art.get('sequence_model')}`; lists naming them: "
        f"{naming.get('with_fusion_version')} / {naming.get('with_sequence_version')} "
        f"of {naming.get('lists')}.\n"
    )


if __name__ == "__main__":
    # python -m infra.replay.report live-0.json live-1.json ...: the per-slice summary table
    reports = [json.loads(Path(p).read_text()) for p in sys.argv[1:]]
    print(summary(reports))
    print(kinds_summary(reports))
