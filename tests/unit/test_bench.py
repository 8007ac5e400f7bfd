"""`resonate bench`'s pure parts: the workload, step summaries, accounting and the report."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from infra.bench.load import SessionWorkload, StepResult
from infra.bench.measure import CpuSample, cpu_between, records_between
from infra.bench.report import KEEP_MARKER, write_report


def test_session_workload_is_zipf_with_skips_and_sessions() -> None:
    tracks = [f"t{i}" for i in range(500)]
    events = SessionWorkload(tracks=tracks, listeners=200, seed=1).batch(20_000)
    kinds = Counter(k for _, _, k in events)
    assert 0.17 < kinds["skip"] / len(events) < 0.23
    by_track = Counter(t for _, t, _ in events)
    assert by_track["t0"] > by_track["t10"] > by_track["t400"]  # Zipf: the head dominates
    assert len({u for u, _, _ in events}) == 200
    again = SessionWorkload(tracks=tracks, listeners=200, seed=1).batch(20_000)
    assert again == events  # seeded: runs are comparable


def test_step_summary_flags_a_growing_backlog() -> None:
    steady = StepResult(offered_per_s=100, seconds=10, sent=1000, answered=1000, lists=990)
    steady.latencies_ms = [50.0] * 990 + [300.0] * 10
    steady.backlog = [(t / 10, 5) for t in range(100)]
    s = steady.summary()
    assert s["backlog_slope_per_s"] == 0 and s["p50_ms"] == 50 and s["answered_frac"] == 1.0
    growing = StepResult(offered_per_s=100, seconds=10, sent=1000, answered=500, lists=500)
    growing.backlog = [(t / 10, 50 * t / 10) for t in range(100)]
    assert growing.summary()["backlog_slope_per_s"] == 50.0


def test_cpu_and_records_per_interaction() -> None:
    a = CpuSample(at=0.0, cpu_s={"worker-0": 1.0, "kafka": 2.0})
    b = CpuSample(at=10.0, cpu_s={"worker-0": 6.0, "kafka": 3.0})
    cpu = cpu_between(a, b, events=1000)
    assert cpu["worker-0"] == {"cpu_pct": 50.0, "cpu_ms_per_event": 5.0}
    recs = records_between({"in": 10, "out": 0}, {"in": 110, "out": 100, "idle": 0}, events=100)
    assert recs["per_topic"] == {"in": 100, "out": 100} and recs["per_interaction"] == 2.0


def _step(rate: float, p99: float, ok: bool) -> dict[str, Any]:
    return {
        "offered_per_s": rate,
        "sent_per_s": rate,
        "answered_per_s": rate,
        "lists_per_s": rate,
        "answered_frac": 1.0,
        "p50_ms": p99 / 3,
        "p95_ms": p99 / 2,
        "p99_ms": p99,
        "backlog_slope_per_s": 0.0 if ok else rate / 2,
        "cpu": {
            "worker-0": {"cpu_pct": 40.0, "cpu_ms_per_event": 2.0},
            "kafka": {"cpu_pct": 10.0, "cpu_ms_per_event": 0.5},
        },
        "records": {"per_topic": {}, "total": 0, "per_interaction": 3.0},
        "sustainable": ok,
    }


def test_report_names_the_highest_sustainable_rate_and_draws_the_plot(tmp_path: Path) -> None:
    result = {
        "started": 0.0,
        "workers": 1,
        "relay": {"per_s": 50_000.0},
        "ladder": [_step(100, 80, True), _step(200, 120, True), _step(400, 9000, False)],
    }
    text = write_report(result, tmp_path / "perf.md", plot=tmp_path / "bench" / "perf.png")
    assert "**200/s**" in text and "50000.0 records/s" in text
    assert (tmp_path / "performance.png").stat().st_size > 10_000
    assert (tmp_path / "bench" / "perf.png").is_file()
    # Scale-out on paper from the 200/s step: 2 worker CPU-ms per interaction.
    assert "| 10,000 | 29 | 64 | 8 |" in text
    # A hand-written analysis below the marker survives the next run.
    (tmp_path / "perf.md").write_text(text + f"{KEEP_MARKER}\nwhy it is so\n")
    again = write_report(result, tmp_path / "perf.md", plot=tmp_path / "p.png")
    assert again.count("why it is so") == 1 and again.count("# Performance") == 1


def test_stage_budget_files_each_sample_under_its_innermost_stage() -> None:
    from infra.bench.profile import STAGES, stage_budget, stage_shares

    raw = [
        # the state codec inside the fold: the codec's, not the fold's
        "run (faust/agents/agent.py:1);fold_batch (/r/streams/refresh.py:80);"
        "get_state (/r/streams/pipeline.py:140);model_validate (pydantic/main.py:5) 30",
        "run (faust/agents/agent.py:1);fold_batch (/r/streams/refresh.py:80) 10",
        # the search runs in an executor thread: pymilvus frames name it
        "_bootstrap (threading.py:1);search_many (/r/serving/milvus_store.py:560);"
        "_decode (/v/pymilvus/client/search_result.py:9) 20",
        "refresh (/r/streams/refresh.py:150);rank_pools (/r/streams/rank.py:180);"
        "_reason (/r/streams/rank.py:150) 15",
        "refresh (/r/streams/refresh.py:150);gather_pool (/r/streams/candidates.py:200) 15",
        "getmany (/v/aiokafka/consumer/consumer.py:1) 10",
        # named by file: a comprehension in rank.py building items is the ranking's, a
        # helper of candidates.py the candidates', the refresher's own loop is glue
        "refresh (/r/streams/refresh.py:9);_emit.<locals>.<listcomp> (/r/streams/rank.py:3);"
        "BaseModel.__init__ (pydantic/main.py:280) 8",
        "refresh (/r/streams/refresh.py:9);kept_and_skipped (/r/streams/candidates.py:5) 6",
        "interactions (/r/streams/pipeline.py:9);refresh (/r/streams/refresh.py:9) 4",
        # asyncio's gather is not the candidates' (a name rule once filed it there)
        "on_interactions (/r/streams/app.py:1);gather (asyncio/tasks.py:1) 2",
        # the skip evidence: made with the candidates by a rule of models/fusion_rule.py
        "gather_pool (/r/streams/candidates.py:1);skip_evidence (/r/streams/candidates.py:2);"
        "audio_skip_evidence (/r/models/fusion_rule.py:3);norm (numpy/linalg.py:4) 5",
        "not a sample line",
    ]
    shares, n = stage_shares(raw)
    assert n == 125
    assert set(shares) == set(STAGES)
    assert shares["state codec"] == 0.24 and shares["fold"] == 0.08
    assert shares["vector search"] == 0.16 and shares["rank"] == 0.184
    assert shares["candidates"] == 0.208 and shares["framework"] == 0.096
    assert shares["batch glue"] == 0.032
    budget = stage_budget(shares, 4.0)
    assert budget["state codec"] == 0.96 and abs(sum(budget.values()) - 4.0) < 1e-3


def test_the_worker_collects_young_objects_at_its_own_pace_and_freezes_its_start() -> None:
    import gc

    from schemas.settings import Settings
    from streams.runtime import tune_gc

    before, frozen = gc.get_threshold(), gc.get_freeze_count()
    try:
        tune_gc(Settings(gc_young_threshold=12_345))
        assert gc.get_threshold() == (12_345, *before[1:])
        assert gc.get_freeze_count() > frozen  # what exists at start is out of every pass
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_hotpath_drives_the_worker_steps_and_reports_cpu_per_step(tmp_path: Path) -> None:
    import argparse
    import asyncio
    import gc

    from infra.bench.hotpath import STEPS, run
    from schemas.settings import Settings

    o = argparse.Namespace(
        events=300,
        warmup=100,
        batch=50,
        listeners=40,
        audio=50,
        silent=50,
        artists=10,
        seed=0,
        profile=None,
        out=None,
        default_gc=True,
    )
    before = gc.get_threshold()
    got = asyncio.run(run(o, Settings()))
    assert gc.get_threshold() == before  # --default-gc leaves the collector alone
    assert set(got["cpu_ms_per_event"]) == set(STEPS)
    assert all(v > 0 for v in got["cpu_ms_per_event"].values())
    assert 0 <= got["of_which_gc_ms_per_event"] < got["total_cpu_ms_per_event"]
    assert not any(getattr(cb, "__qualname__", "").startswith("Metrics.") for cb in gc.callbacks)
    # 50 events over 40 listeners: most batches touch each listener once, two kinds each
    assert 1.0 < got["lists_per_event"] <= 2.0


def test_gc_time_is_counted_per_generation_and_read_back_over_workers() -> None:
    import gc

    from infra.bench.measure import counter_total
    from streams.metrics import Metrics

    m = Metrics()
    on_gc = m.time_gc()
    try:
        gc.collect()
    finally:
        gc.callbacks.remove(on_gc)
    full = m.registry.get_sample_value("resonate_gc_seconds_total", {"generation": "2"})
    assert full is not None and full > 0
    from prometheus_client import generate_latest

    text = generate_latest(m.registry).decode()
    total = counter_total([text, text], "resonate_gc_seconds")  # two workers
    assert abs(total - 2 * full) < 1e-6
    assert counter_total([text], "resonate_no_such") == 0.0
