"""`resonate` commands that measure a running embedded stack: bench and replay.

Plain functions; `infra.cli` registers them on its app (in `resonate --help` order), so the
command names stay flat (`resonate bench`, `resonate replay`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from infra.cli_common import cli_settings, configure_logging


def bench(
    out: Annotated[Path, typer.Option(help="Folder for bench.json and the plot.")] = Path(
        "run/bench"
    ),
    report: Annotated[Path, typer.Option(help="The Markdown report to write.")] = Path(
        "docs/performance.md"
    ),
    rates: Annotated[str, typer.Option(help="Offered interactions/s of the ladder.")] = (
        "100,200,500,1000,1500"
    ),
    step_s: Annotated[float, typer.Option(help="Seconds per ladder step.")] = 30.0,
    soak_rate: Annotated[float, typer.Option(help="Interactions/s of the soak.")] = 500.0,
    soak_s: Annotated[float, typer.Option(help="Soak length (s); 0 = no soak.")] = 1800.0,
    replay: Annotated[
        Path | None, typer.Option(help="30Music slice to replay; default the first under data_dir.")
    ] = None,
    vectors: Annotated[str, typer.Option(help="Vector-search sizes; '' = none.")] = "100000",
    quick: Annotated[bool, typer.Option(help="Smoke run: short steps, no soak, 10k vectors.")] = (
        False
    ),
    clips: Annotated[int, typer.Option(help="Real clips to upload (0 = all 40).")] = 0,
    singles: Annotated[int, typer.Option(help="Single uploads timed one at a time.")] = 8,
    bare: Annotated[bool, typer.Option(help="Measure the in-process upload ceiling.")] = True,
    workers: Annotated[int, typer.Option(help="Faust workers of the stack.")] = 1,
    profile_rate: Annotated[
        float, typer.Option(help="Ladder rate at which py-spy profiles worker 0.")
    ] = 1000.0,
    scale_rate: Annotated[
        float, typer.Option(help="Offered rate of the 1-vs-2-workers steps; 0 = none.")
    ] = 1500.0,
) -> None:
    """Measure throughput, latency, cost per interaction, uploads and vector search."""
    from infra.bench.report import write_report
    from infra.bench.run import BenchPlan, run_bench

    configure_logging()
    settings = cli_settings(workers=workers)
    replay_path = replay or next(iter(sorted((settings.data_dir / "30music").glob("*.txt"))), None)
    plan = BenchPlan(
        rates=tuple(float(r) for r in rates.split(",") if r),
        step_s=step_s,
        soak_rate=soak_rate,
        soak_s=soak_s,
        replay_path=replay_path,
        vectors=tuple(int(v) for v in vectors.split(",") if v),
        clips=clips,
        singles=singles,
        bare=bare,
        profile_rate=profile_rate,
        scale_rate=scale_rate,
    )
    if quick:
        plan = BenchPlan(
            rates=(100, 500),
            step_s=8,
            soak_s=0,
            replay_path=replay_path,
            replay_s=8,
            singles=2,
            vectors=(10_000,),
            relay_records=10_000,
            profile_rate=500,
            scale_rate=800,
            scale_s=8,
        )
    result = run_bench(settings, plan, out.resolve())
    typer.echo(write_report(result, report, plot=out.resolve() / "performance.png"))


def replay(
    dataset: Annotated[str, typer.Option(help="The log's kind: 30music.")] = "30music",
    path: Annotated[
        Path | None, typer.Option(help="30Music slice; default the first under data_dir.")
    ] = None,
    out: Annotated[Path, typer.Option(help="JSON report; Markdown beside it (.md).")] = Path(
        "run/replay/live.json"
    ),
    listeners: Annotated[
        int, typer.Option(help="Listeners sampled from the log; 0 = all (~1 in 14 is scored).")
    ] = 0,
    speedup: Annotated[float, typer.Option(help="Log seconds replayed per wall second.")] = 2000.0,
    audio_tracks: Annotated[
        int, typer.Option(help="New tracks uploaded as real clips (cold start); 0 = none.")
    ] = 40,
    user_model_dir: Annotated[
        Path | None,
        typer.Option(
            help="Sequence-model artifact root to serve; default: train one on the slice."
        ),
    ] = None,
    train_seconds: Annotated[float, typer.Option(help="Cap of that training (s).")] = 300.0,
    seed: Annotated[int, typer.Option(help="Listener sample and tie-break seed.")] = 0,
) -> None:
    """Replay a real log through an embedded stack; live HR/NDCG/MRR beside the offline ones."""
    from infra.replay.report import markdown
    from infra.replay.run import ReplayOptions, run_replay

    configure_logging()
    if dataset != "30music":
        raise typer.BadParameter("only --dataset 30music is replayed so far")
    settings = cli_settings()
    slice_path = path or next(iter(sorted((settings.data_dir / "30music").glob("*.txt"))), None)
    if slice_path is None:
        raise typer.BadParameter(f"no 30Music slice under {settings.data_dir / '30music'}")
    opts = ReplayOptions(
        path=slice_path,
        listeners=listeners,
        seed=seed,
        speedup=speedup,
        n_audio=audio_tracks,
        user_model_dir=user_model_dir,
        train_seconds=train_seconds,
    )
    report = run_replay(settings, opts, out)
    text = markdown(report)
    out.with_suffix(".md").write_text(text)
    typer.echo(text)
