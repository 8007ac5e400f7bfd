"""``bench.json`` -> ``docs/performance.md`` and its plot (latency and backlog vs rate)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from infra.bench.run import P99_SLO_MS


def _ladder_table(steps: list[dict[str, Any]], relay_per_s: float) -> list[str]:
    rows = [
        "| offered/s | sent/s | answered/s | lists/s | p50 ms | p95 ms | p99 ms | backlog/s "
        "| worker CPU% | broker CPU% | worker CPU-ms/ev | broker CPU-ms/ev | records/ev "
        "| rate / relay | sustainable |",
        "|" + "---|" * 15,
    ]
    for s in steps:
        w = _workers(s["cpu"])
        k = s["cpu"].get("kafka", {})
        rows.append(
            f"| {s['offered_per_s']:.0f} | {s['sent_per_s']} | {s['answered_per_s']} "
            f"| {s['lists_per_s']} | {s['p50_ms']} | {s['p95_ms']} | {s['p99_ms']} "
            f"| {s['backlog_slope_per_s']} | {w.get('cpu_pct')} | {k.get('cpu_pct')} "
            f"| {w.get('cpu_ms_per_event')} | {k.get('cpu_ms_per_event')} "
            f"| {s['records']['per_interaction']} "
            f"| {s['answered_per_s'] / max(1.0, relay_per_s):.3f} "
            f"| {'yes' if s['sustainable'] else 'no'} |"
        )
    return rows


def _workers(cpu: dict[str, dict[str, float]]) -> dict[str, float]:
    """CPU of all workers together (scale-out: the sum is what a rate costs)."""
    ws = [v for k, v in cpu.items() if k.startswith("worker-")]
    return {
        "cpu_pct": round(sum(w["cpu_pct"] for w in ws), 1),
        "cpu_ms_per_event": round(sum(w["cpu_ms_per_event"] for w in ws), 3),
    }


def _plot(steps: list[dict[str, Any]], path: Path, workers: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [s["offered_per_s"] for s in steps]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for q in ("p50_ms", "p95_ms", "p99_ms"):
        a.plot(x, [s[q] for s in steps], marker="o", label=q.replace("_ms", ""))
    a.axhline(P99_SLO_MS, color="grey", ls="--", label=f"p99 target {P99_SLO_MS:.0f} ms")
    a.set(xlabel="offered interactions/s", ylabel="event -> list latency (ms)", yscale="log")
    a.legend()
    b.plot(x, [s["backlog_slope_per_s"] for s in steps], marker="o", color="C3")
    b.set(xlabel="offered interactions/s", ylabel="backlog growth (events/s)")
    fig.suptitle(f"{workers} Faust worker(s) on the embedded stack (2 cores)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _best(steps: list[dict[str, Any]]) -> dict[str, Any] | None:
    ok = [s for s in steps if s["sustainable"]]
    return max(ok, key=lambda s: s["offered_per_s"]) if ok else None


def write_report(result: dict[str, Any], path: Path, *, plot: Path) -> str:
    """Write the Markdown report (and the plot beside it); return the text."""
    steps = result.get("ladder", [])
    relay = result.get("relay", {})
    png = path.parent / "performance.png"
    if steps:
        _plot(steps, png, result.get("workers", 1))
        if plot != png:
            plot.parent.mkdir(parents=True, exist_ok=True)
            plot.write_bytes(png.read_bytes())
    best = _best(steps)
    lines = [
        "# Performance",
        "",
        f"Made by `resonate bench` on {time.strftime('%Y-%m-%d', time.gmtime(result['started']))}"
        f" (2 cores, embedded stack: Apache Kafka {result.get('kafka_version', '')} (KRaft,"
        " one node), Milvus Lite, pytriton on CPU,"
        f" {result.get('workers', 1)} Faust worker(s); no query API, the bench reads the"
        " lists itself). Every figure of one run comes from"
        " the same stack, side by side;"
        " absolute times on these shared machines drift 5-20% between runs, ratios less."
        " Raw numbers: `bench.json` of the run.",
        "",
        "![latency and backlog against offered rate](performance.png)",
        "",
        "## Interactions: open-loop ladder",
        "",
        f"Pipe limit of this broker (bare aiokafka consume->produce relay, the stack's producer"
        f" settings): **{relay.get('per_s', 'n/a')} records/s**.",
        "",
        *_ladder_table(steps, float(relay.get("per_s") or 1.0)),
        "",
        f"Highest sustainable rate (p99 <= {P99_SLO_MS:.0f} ms, >= 99% answered, no growing"
        f" backlog): **{best['offered_per_s']:.0f}/s**"
        if best
        else "No step was sustainable.",
        "",
    ]
    lines += _batch_section(steps)
    lines += _scale_out(steps)
    lines += _budget_section(steps, path.parent)
    lines += _scale_section(result.get("scale"))
    lines += _sections(result)
    text = "\n".join(lines) + "\n" + _kept(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return text


#: Everything from this line on in an existing report is written by people and kept.
KEEP_MARKER = "<!-- analysis: written by hand, kept when resonate bench rewrites the figures -->"


def _kept(path: Path) -> str:
    if not path.is_file():
        return ""
    old = path.read_text()
    at = old.find(KEEP_MARKER)
    return "" if at < 0 else "\n" + old[at:]


def _scale_out(steps: list[dict[str, Any]]) -> list[str]:
    """Workers, partitions and broker cores for 10k and 100k interactions/s, on paper."""
    import math

    busy = [s for s in steps if s["sustainable"]] or steps
    if not busy:
        return []
    ref = max(busy, key=lambda s: s["offered_per_s"])
    w_ms = _workers(ref["cpu"])["cpu_ms_per_event"]
    b_ms = ref["cpu"].get("kafka", {}).get("cpu_ms_per_event", 0.0)
    lines = [
        "## Scale-out on paper",
        "",
        f"From the {ref['offered_per_s']:.0f}/s step: {w_ms} worker CPU-ms and {b_ms} broker"
        " CPU-ms per interaction. A worker is one Python process (one core); at 70%"
        " utilisation it carries 700 / worker-ms interactions/s. Partitions: at least the"
        " workers, rounded up to a power of two with 2x headroom so workers can be added"
        " without re-partitioning (keys move when partitions are added). The broker column"
        " is this one-node Kafka's measured cost per interaction (all its records: input,"
        " state, lists, deltas) at 70% of a core; a replicated cluster pays more per record"
        " (replication fetches), so size it by its own benchmark.",
        "",
        "| interactions/s | workers (cores) | partitions | broker cores (this run's cost) |",
        "|---|---|---|---|",
    ]
    for rate in (10_000, 100_000):
        workers = max(1, math.ceil(rate * w_ms / 700))
        parts = 2 ** math.ceil(math.log2(2 * workers))
        lines.append(f"| {rate:,} | {workers} | {parts} | {math.ceil(rate * b_ms / 700)} |")
    return [*lines, ""]


_BATCH_STEPS = ("fold", "sequences", "audio", "candidates", "rank", "emit", "batch")


def _batch_section(steps: list[dict[str, Any]]) -> list[str]:
    """Mean wall time of each step of an interaction batch, per ladder step (from the
    workers' ``resonate_batch_step_seconds``)."""
    if not any(s.get("batch_steps") for s in steps):
        return []
    lines = [
        "Where a batch's wall time goes (mean ms per batch, all workers;"
        " `resonate_batch_step_seconds`):",
        "",
        "| offered/s | batches | " + " | ".join(_BATCH_STEPS) + " |",
        "|---|---|" + "---|" * len(_BATCH_STEPS),
    ]
    for s in steps:
        b = s.get("batch_steps", {})
        cells = [str(b.get(k, {}).get("mean_ms", "")) for k in _BATCH_STEPS]
        n = b.get("batch", {}).get("batches", 0)
        lines.append(f"| {s['offered_per_s']:.0f} | {n:.0f} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _budget_section(steps: list[dict[str, Any]], docs: Path) -> list[str]:
    """The worker's CPU per interaction by stage, from the profiled step (and its flame
    graph, copied beside the report)."""
    prof = next(((s, s["profile"]) for s in steps if s.get("profile", {}).get("shares")), None)
    if prof is None:
        return []
    step, p = prof
    flame = Path(p["files"].get("flamegraph", ""))
    link = ""
    if flame.is_file():
        (docs / "performance-flame.svg").write_bytes(flame.read_bytes())
        link = " Flame graph: [performance-flame.svg](performance-flame.svg)."
    lines = [
        "## Where the worker's CPU goes",
        "",
        f"py-spy on worker 0 during the {step['offered_per_s']:.0f}/s step ({p['samples']}"
        f" samples, non-blocking), each sample filed under the innermost stage it names"
        f" (`infra/bench/profile.py`); the worker used **{p['worker_cpu_ms_per_answered']}"
        f" CPU-ms per answered interaction** in that step.{link}",
        "",
        "| stage | share of samples | CPU-ms per interaction |",
        "|---|---|---|",
    ]
    for stage, share in sorted(p["shares"].items(), key=lambda kv: -kv[1]):
        lines.append(f"| {stage} | {share:.1%} | {p['cpu_ms_per_interaction'][stage]} |")
    if (gc_ms := step.get("gc_ms_per_answered")) is not None:
        lines += [
            "",
            f"Python's garbage collector ran **{gc_ms} ms per answered interaction** in that"
            " step (`resonate_gc_seconds_total`, all workers): inside the stages above, since"
            " a collection runs where an allocation triggers it.",
        ]
    return [*lines, ""]


def _scale_section(scale: dict[str, Any] | None) -> list[str]:
    """One worker against two, each offered more than it can carry."""
    if not scale:
        return []
    rows = []
    for name, step in (("1 worker", scale["one"]), ("2 workers", scale["two"])):
        w = _workers(step["cpu"])
        rows.append(
            f"| {name} | {step['offered_per_s']:.0f} | {step['answered_per_s']} "
            f"| {w['cpu_pct']} | {w['cpu_ms_per_event']} "
            f"| {step['cpu'].get('kafka', {}).get('cpu_pct')} "
            f"| {step['cpu'].get('bench', {}).get('cpu_pct')} |"
        )
    return [
        "## Workers that add up",
        "",
        "Capacity (answered/s while offered more than the workers carry), one worker, then a"
        f" second joining the same group, in one run: **{scale['ratio']}x**. CPU is % of one"
        " core (this machine has two, shared by every process of the stack and the bench's own"
        " load generator).",
        "",
        "| workers | offered/s | answered/s | workers CPU% | worker CPU-ms/interaction "
        "| broker CPU% | bench CPU% |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]


def _sections(result: dict[str, Any]) -> list[str]:
    out: list[str] = []
    if ready := result.get("ready_s"):
        parts = ", ".join(f"{k} {v} s" for k, v in ready.items() if k != "stack")
        out += [
            "## Broker and start-up",
            "",
            f"- Kafka {result.get('kafka_version', '')}: `resonate bench`'s stack ready in"
            f" **{ready.get('stack')} s** (components, started side by side: {parts})",
            f"- a consumer of a new group has its partitions after"
            f" **{result.get('group_join_s')} s**",
            "",
        ]
    if rp := result.get("replay"):
        out += [
            "## Replay of a real log (30Music, time-compressed)",
            "",
            f"`{rp['path']}` at {rp['offered_per_s']:.0f}/s ({rp.get('workers', 1)} worker(s)):"
            f" p50/p95/p99 {rp['p50_ms']}/"
            f"{rp['p95_ms']}/{rp['p99_ms']} ms, answered {rp['answered_frac']:.1%},"
            f" records/interaction {rp['records']['per_interaction']}.",
            "",
        ]
    if soak := result.get("soak"):
        out += [
            f"## Soak: {soak['offered_per_s']:.0f}/s for {len(soak['minutes'])} min,"
            f" {soak.get('workers', 1)} worker(s)",
            "",
            "| minute | p99 ms | broker CPU% | broker CPU-ms/interaction | worker CPU% "
            "| broker RSS MB |",
            "|---|---|---|---|---|---|",
        ]
        for m in soak["minutes"]:
            kafka = m["cpu"].get("kafka", {})
            out.append(
                f"| {m['minute']} | {m['p99_ms']} | {kafka.get('cpu_pct')} "
                f"| {kafka.get('cpu_ms_per_event')} | {_workers(m['cpu'])['cpu_pct']} "
                f"| {m['kafka_rss_mb']} |"
            )
        out.append("")
    up, bare = result.get("uploads"), result.get("upload_bare")
    if up and bare and "ratio_to_bare" in up:
        out += [
            "## Uploads",
            "",
            f"- bare decode + log-mel + MusiCNN in one process: {bare['clips_per_s']} clips/s"
            f" ({bare['ms_per_patch']} ms per 3 s patch)",
            f"- burst of {up['burst']['tracks']} real clips through Kafka, Triton and Milvus:"
            f" {up['burst']['tracks_per_s']} tracks/s = **{up['ratio_to_bare']:.0%} of bare**",
            f"- one upload at a time ({up['single']['n']}): upload -> searchable p50"
            f" {up['single']['p50_s']} s, p95 **{up['single']['p95_s']} s**",
            "",
        ]
    if vec := result.get("vectors"):
        out += [
            "## Vector search (Milvus Lite, 200-d, k=10, one client)",
            "",
            "| index | vectors | p50 ms | p95 ms | p99 ms | recall@10 |",
            "|---|---|---|---|---|---|",
        ]
        for r in vec:
            out.append(
                f"| {r['index_type']} | {r['n']} | {r['search_ms_p50']:.2f} "
                f"| {r['search_ms_p95']:.2f} | {r.get('search_ms_p99', float('nan')):.2f} "
                f"| {r['recall_at_k']:.3f} |"
            )
        out.append("")
    return out
