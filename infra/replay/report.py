"""Markdown of replay reports (``infra.replay.run.run_replay``): live beside offline."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from models.recsys.counterpart import VARIANTS
from models.recsys.prequential import METRICS

_LABELS = {
    "offline": "offline (tables' protocol)",
    "offline-excl": "offline, heard tracks excluded",
    "offline-excl-noaudio": "offline, heard excluded, no content",
}


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
    for name in VARIANTS:
        off = report["offline"][name]
        rows.append(f"| {_LABELS[name]} | " + " | ".join(_fig(off[m]) for m in METRICS) + " |")
    for name in VARIANTS:
        rat = report["ratio"][name]
        rows.append(
            f"| live / {_LABELS[name]} | " + " | ".join(_ratio(rat[m]) for m in METRICS) + " |"
        )
    return head + "\n".join(rows) + "\n"


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


def summary(reports: Sequence[dict[str, Any]]) -> str:
    """One row per slice: live HR@20 beside the offline HR@20 and the ratio."""
    rows = [
        "| slice | live HR@20 | offline HR@20 | live / offline | offline HR@20, heard excluded "
        "| live / that |",
        "|---|---|---|---|---|---|",
    ]
    for r in reports:
        rows.append(
            f"| {r['slice']} | {_fig(r['live']['HR@20'])}"
            f" | {_fig(r['offline']['offline']['HR@20'])}"
            f" | {_ratio(r['ratio']['offline']['HR@20'])}"
            f" | {_fig(r['offline']['offline-excl']['HR@20'])}"
            f" | {_ratio(r['ratio']['offline-excl']['HR@20'])} |"
        )
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
