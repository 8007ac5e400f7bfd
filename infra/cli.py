"""`resonate`: the single entry point of Resonate (see `resonate --help`)."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from schemas.settings import Settings
from serving.redact import install_log_redaction

app = typer.Typer(add_completion=False, help="Resonate: real-time music recommendations.")


def _logging(verbose: bool = False) -> None:
    install_log_redaction()
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _settings(**overrides: Any) -> Settings:
    """Environment (RESONATE_*) plus explicit command-line overrides."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


@app.command()
def up(
    workers: Annotated[int | None, typer.Option(help="Faust workers to start.")] = None,
    partitions: Annotated[int | None, typer.Option(help="Partitions per topic.")] = None,
) -> None:
    """Start the embedded stack and keep it running until Ctrl-C."""
    from infra.stack import EmbeddedStack

    _logging()
    settings = _settings(workers=workers, partitions=partitions)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with EmbeddedStack(settings=settings) as stack:
        typer.echo(f"stack up; addresses in {stack.run_dir / 'stack.json'}")
        typer.echo(json.dumps(json.loads((stack.run_dir / "stack.json").read_text()), indent=2))
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
        typer.echo("stopping ...")


@app.command()
def demo(
    audio_dir: Annotated[
        Path | None, typer.Option(help="Use your own music files instead of a synthetic catalog.")
    ] = None,
    listeners: Annotated[int, typer.Option(help="Simulated listeners.")] = 4,
    stay: Annotated[
        bool, typer.Option(help="Keep the stack (and the inspector page) up until Ctrl-C.")
    ] = True,
) -> None:
    """Start the stack, upload a catalog, simulate listeners, show their lists live."""
    from rich.console import Console

    from infra.demo import folder_catalog, run_demo, synth_catalog
    from infra.demo_view import RichReport, quiet_logging
    from infra.stack import EmbeddedStack
    from models.convert_musicnn import MUSICNN_CARD
    from streams.fusion import track_label

    base = _settings()
    log_path = quiet_logging(base.run_dir / "logs" / "demo.log")
    console = Console()
    if audio_dir is not None:
        catalog = folder_catalog(audio_dir)
        roots = [audio_dir.resolve()]
        if not catalog:
            raise typer.BadParameter(f"no audio files under {audio_dir}")
    else:
        folder = (base.run_dir / "demo-audio").resolve()
        catalog = synth_catalog(folder)
        roots = [folder]
    settings = base.model_copy(update={"audio_roots": [*base.audio_roots, *roots]})
    titles = {t.track_id: track_label(t.track_id, t.artist_id) for t in catalog}
    console.print(
        f"[bold]Resonate demo[/]: {len(catalog)} tracks, {listeners} listeners "
        f"[dim](logs: {log_path})[/]"
    )
    with console.status("starting Kafka, Triton, Milvus Lite, a worker and the API …"):
        stack = EmbeddedStack(settings=settings).__enter__()
    try:
        report = RichReport(console=console, titles=titles)
        run_demo(
            stack.settings,
            catalog=catalog,
            dim=MUSICNN_CARD.embed_dim,
            listeners=listeners,
            report=report,
        )
        if stack.api_url:
            page = f"{stack.api_url}/inspector?user=listener-0"
            console.print(f"\nInspector: [bold]{page}[/]  ·  API docs: {stack.api_url}/docs")
        if stay:
            console.print("[dim]the stack stays up; Ctrl-C stops it[/]")
            _wait_for_stop()
    finally:
        with console.status("stopping …"):
            stack.__exit__(None, None, None)


def _wait_for_stop() -> None:
    """Block until Ctrl-C or SIGTERM."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass


@app.command()
def worker() -> None:
    """Run one Faust worker (settings from RESONATE_* variables; `up` starts these)."""
    from models.convert_musicnn import MUSICNN_CARD
    from streams.runtime import run_worker

    _logging()
    run_worker(_settings(), MUSICNN_CARD)


@app.command()
def api(
    port: Annotated[int | None, typer.Option(help="Port (default: the api_port setting).")] = None,
) -> None:
    """Serve the query API and inspector page (addresses from RESONATE_* or run/stack.json)."""
    from infra.stack import read_state
    from models.convert_musicnn import MUSICNN_CARD
    from serving.api.server import run_api, with_stack_state

    _logging()
    settings = _settings(api_port=port)
    if not (settings.kafka_bootstrap and settings.milvus_uri and settings.triton_url):
        settings = with_stack_state(settings, read_state(settings.run_dir))
    run_api(settings, MUSICNN_CARD)


@app.command()
def schemas(
    out: Annotated[Path, typer.Option(help="Folder for the JSON Schema files.")] = Path(
        "schemas-json"
    ),
) -> None:
    """Write the JSON Schemas of the public events (one file per topic)."""
    from schemas.events import json_schemas

    out.mkdir(parents=True, exist_ok=True)
    for name, schema in json_schemas().items():
        path = out / f"{name}.schema.json"
        path.write_text(json.dumps(schema, indent=2) + "\n")
        typer.echo(str(path))


@app.command()
def train(
    dataset: Annotated[str, typer.Option(help="lastfm, 30music or events (interactions JSONL).")],
    path: Annotated[Path, typer.Option(help="The log file.")],
    out: Annotated[
        Path, typer.Option(help="Artifact root; a new <version>/ folder is written in it.")
    ],
    model: Annotated[str, typer.Option(help="Sequence model to train: sasrec or dmmhyrec.")] = (
        "sasrec"
    ),
    epochs: Annotated[int, typer.Option(help="Maximum epochs (early stopping on valid).")] = 200,
    max_len: Annotated[int, typer.Option(help="History length L the model reads.")] = 50,
    batch_size: Annotated[int, typer.Option(help="Training batch size.")] = 256,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 1e-3,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Train a user (sequence) encoder and write a servable artifact <out>/<version>/.

    Serve it by setting RESONATE_USER_MODEL_DIR=<out>: Triton serves the newest version
    and picks up later ones without a restart.
    """
    from models.recsys.export_user import DATASETS, MODELS, train_artifact

    _logging()
    if dataset not in DATASETS:
        raise typer.BadParameter(f"--dataset must be one of {', '.join(DATASETS)}")
    if model not in MODELS:
        raise typer.BadParameter(f"--model must be one of {', '.join(MODELS)}")
    folder = train_artifact(
        dataset,
        path,
        out,
        model=model,
        epochs=epochs,
        max_len=max_len,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
    )
    typer.echo((folder / "card.json").read_text())
    typer.echo(str(folder))


@app.command("eval")
def eval_(
    dataset: Annotated[str, typer.Option(help="lastfm, 30music or events (interactions JSONL).")],
    path: Annotated[
        Path | None,
        typer.Option(
            help="Benchmark file or directory (30Music: every slice); default: under data_dir."
        ),
    ] = None,
    models: Annotated[str, typer.Option(help="Comma-separated models.")] = (
        "random,pop,itemknn,contentknn,bpr,sasrec,dmmhyrec"
    ),
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds.")] = "0,1,2",
    quick: Annotated[
        bool, typer.Option(help="CI mode: one 30Music slice, seed 0, short training.")
    ] = False,
    sampled: Annotated[
        int, typer.Option(help="Rank among N sampled negatives (S3-Rec: 99); 0 = full ranking.")
    ] = 0,
    out: Annotated[Path | None, typer.Option(help="Write the results as JSON here.")] = None,
    markdown: Annotated[
        Path | None, typer.Option(help="Also write the tables as Markdown here.")
    ] = None,
    cache_dir: Annotated[
        Path | None,
        typer.Option(help="Keep/reuse each (model, seed) run here (parallel runs, then combine)."),
    ] = None,
    max_seconds: Annotated[
        float, typer.Option(help="Wall-clock cap per neural model fit; 0 = none.")
    ] = 0.0,
    threads: Annotated[int, typer.Option(help="torch intra-op threads.")] = 1,
    compare: Annotated[
        str,
        typer.Option(help="Paired per-user differences, e.g. 'hybrid:itemknn,sasrec:bpr'."),
    ] = "",
    fusion_weights_out: Annotated[
        Path | None,
        typer.Option(help="Publish the hybrid models' chosen fusion weights as DIR/<version>/."),
    ] = None,
) -> None:
    """Train and evaluate recommenders on a listening log; print Table-2-style results."""
    import torch

    from models.recsys.evaluate import DATASETS, MODELS
    from models.recsys.report import evaluate

    _logging()
    if dataset not in DATASETS:
        raise typer.BadParameter(f"--dataset must be one of {', '.join(DATASETS)}")
    names = models.split(",")
    if unknown := [m for m in names if m not in MODELS]:
        raise typer.BadParameter(f"unknown models {unknown}; choose from {', '.join(MODELS)}")
    data_dir = _settings().data_dir
    default = {"lastfm": data_dir / "lastfm-s3rec", "30music": data_dir / "30music"}
    if path is None and dataset not in default:
        raise typer.BadParameter("--path is required for this dataset")
    pairs = [p.split(":") for p in compare.split(",") if p]
    if any(len(p) != 2 or not set(p) <= set(names) for p in pairs):
        raise typer.BadParameter("--compare takes a:b pairs of evaluated --models")
    if fusion_weights_out is not None and not {"hybrid", "hybrid-sasrec"} & set(names):
        raise typer.BadParameter("--fusion-weights-out needs hybrid and/or hybrid-sasrec models")
    # One thread per run by default: the numbers are then comparable between parallel runs.
    torch.set_num_threads(threads)
    report = evaluate(
        dataset=dataset,
        path=path or default[dataset],
        models=names,
        seeds=[0] if quick else [int(s) for s in seeds.split(",")],
        quick=quick,
        sampled=sampled,
        out=out,
        markdown_out=markdown,
        cache_dir=cache_dir,
        max_seconds=max_seconds,
        compare=[(a, b) for a, b in pairs],
    )
    if fusion_weights_out is not None:
        from models.recsys.weights_export import publish_from_report

        typer.echo(str(publish_from_report(report, fusion_weights_out)))


@app.command("eval-audio")
def eval_audio(
    out: Annotated[Path | None, typer.Option(help="Write the figures as JSON here.")] = None,
    audio_dir: Annotated[
        Path | None, typer.Option(help="Clips with manifest.csv; default <data_dir>/audio.")
    ] = None,
) -> None:
    """Same-track and same-style retrieval of the real clips: MusiCNN vs tags, MFCC, random."""
    import json

    from models.audio_eval import evaluate_audio, markdown

    _logging()
    settings = _settings()
    result = evaluate_audio(audio_dir or settings.data_dir / "audio", settings.weights_path)
    typer.echo(markdown(result))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))


@app.command("eval-genre")
def eval_genre(
    out: Annotated[Path | None, typer.Option(help="Write the figures as JSON here.")] = None,
    audio_dir: Annotated[
        Path | None, typer.Option(help="Clips with manifest.csv; default <data_dir>/audio.")
    ] = None,
) -> None:
    """Genre from audio vs the clips' styles, and an HPSS front end on clip retrieval."""
    from models.genre_eval import evaluate_genre, markdown

    _logging()
    settings = _settings()
    result = evaluate_genre(audio_dir or settings.data_dir / "audio", settings.weights_path)
    typer.echo(markdown(result))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))


@app.command("skip-panel")
def skip_panel(
    out: Annotated[Path | None, typer.Option(help="Write the figures as JSON here.")] = None,
    audio_dir: Annotated[
        Path | None, typer.Option(help="Clips with manifest.csv; default <data_dir>/audio.")
    ] = None,
    embeddings: Annotated[
        Path | None, typer.Option(help="Reuse (or write) the clips' MusiCNN vectors, .npz.")
    ] = None,
    seeds: Annotated[int, typer.Option(help="Listeners per (liked, disliked) style pair.")] = 5,
) -> None:
    """SIMULATED listeners on the real clips: disliked style's share of lists after skips."""
    import json

    from infra.skip_panel import clip_vectors, markdown, run_panel
    from models.audio_eval import read_manifest

    _logging()
    settings = _settings()
    where = audio_dir or settings.data_dir / "audio"
    vectors = clip_vectors(where, settings.weights_path, embeddings)
    result = run_panel(vectors, read_manifest(where), seeds=seeds)
    typer.echo(markdown(result))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))


@app.command("convert-musicnn")
def convert_musicnn(
    out: Annotated[Path | None, typer.Option(help="Where to write the weights.")] = None,
) -> None:
    """Convert MusiCNN's TensorFlow checkpoint (musicnn wheel) to PyTorch weights, once."""
    from models.convert_musicnn import convert

    _logging()
    path = convert(out or _settings().weights_path)
    typer.echo(str(path))


@app.command("export-triton")
def export_triton(
    out: Annotated[
        Path | None,
        typer.Option(help="Model repository root; default <run_dir>/model_repository."),
    ] = None,
    weights: Annotated[
        Path | None, typer.Option(help="Converted MusiCNN weights; default the weights_path.")
    ] = None,
    user_model_dir: Annotated[
        Path | None,
        typer.Option(help="Also export the newest user-encoder artifact here (user_model_dir)."),
    ] = None,
) -> None:
    """Export MusiCNN (and the user encoder) with config.pbtxt for a production Triton.

    Run again after `resonate train` to add the new sequence model as the next version.
    """
    from models.export import export_command
    from models.export_user_triton import export_user_encoder

    _logging()
    settings = _settings()
    repo = out or settings.run_dir / "model_repository"
    export_command(weights or settings.weights_path, repo)
    user_dir = user_model_dir or settings.user_model_dir
    if user_dir is not None:
        folder, version = export_user_encoder(
            user_dir, repo, name=settings.user_model_name, top_n=settings.user_model_top_n
        )
        typer.echo(f"{folder} (version {version})")


@app.command()
def topics() -> None:
    """Create the topics (as `up` does) on RESONATE_KAFKA_BOOTSTRAP; idempotent, then exit."""
    from serving.kafka_security import KafkaSecurity
    from serving.kafka_topics import ensure_topics

    _logging()
    s = _settings()
    if not s.kafka_bootstrap:
        raise typer.BadParameter("set RESONATE_KAFKA_BOOTSTRAP")
    counts = ensure_topics(
        s.kafka_bootstrap,
        s.stack_topics(),
        partitions=s.partitions,
        timeout_s=s.timeout_s,
        security=KafkaSecurity.from_settings(s),
    )
    typer.echo(json.dumps(counts))


@app.command()
def status(
    metrics: Annotated[
        list[str] | None,
        typer.Option(help="A worker's /metrics URL (repeat); default: those in run/stack.json."),
    ] = None,
    window: Annotated[float, typer.Option(help="Seconds between the two rate scrapes.")] = 2.0,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of the screen.")] = False,
) -> None:
    """One screen on a running stack: health, lag, rates, latency vs SLOs, models, dead letters.

    Exit code 0 when all is well, 1 when a component is unhealthy, 2 when an SLO is missed.
    """
    from infra.status import status_command

    text, code = status_command(
        _settings(), worker_metrics=metrics, window_s=window, as_json=as_json
    )
    typer.echo(text)
    raise typer.Exit(code)  # 0 ok, 1 a component unhealthy, 2 an SLO missed


@app.command()
def dlq(
    action: Annotated[str, typer.Argument(help="list | republish")],
    topic: Annotated[str, typer.Option(help="interactions | track-uploads")] = "track-uploads",
    offset: Annotated[
        list[str] | None, typer.Option(help="partition:offset of a letter (repeat).")
    ] = None,
    reason: Annotated[str | None, typer.Option(help="Every letter with this reason.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every letter of the topic.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table.")] = False,
) -> None:
    """Dead letters: list them, or re-publish chosen ones onto their source topic."""
    from infra.dlq import (
        CutLetters,
        choose,
        dlq_topic,
        read_letters,
        render,
        republish,
        spooled_letters,
    )
    from infra.stack import read_state
    from serving.kafka_security import KafkaSecurity

    s = _settings()
    bootstrap, prefix = s.kafka_bootstrap, s.topic_prefix
    if not bootstrap:  # the stack of a running `resonate up`
        state = read_state(s.run_dir)
        bootstrap, prefix = state["kafka_bootstrap"], state.get("topic_prefix", prefix)
    name = dlq_topic(s.model_copy(update={"topic_prefix": prefix}), topic)
    security = KafkaSecurity.from_settings(s)
    letters = asyncio.run(read_letters(bootstrap, name, timeout_s=s.timeout_s, security=security))
    letters += spooled_letters(s.run_dir / "spool", name)
    if action == "list":
        picked = choose(letters, refs=offset or (), reason=reason) if offset or reason else letters
        typer.echo(render(picked, as_json=as_json))
        return
    if action != "republish":
        raise typer.BadParameter("action is list or republish")
    picked = choose(letters, refs=offset or (), reason=reason, everything=all_)
    if not picked:
        raise typer.BadParameter("nothing chosen: give --offset, --reason or --all")
    try:
        sent = asyncio.run(republish(bootstrap, picked, security=security))
    except CutLetters as exc:
        typer.echo(f"refused: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"re-published {sent} letters from {name}")


@app.command()
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

    _logging()
    settings = _settings(workers=workers)
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


@app.command()
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

    _logging()
    if dataset != "30music":
        raise typer.BadParameter("only --dataset 30music is replayed so far")
    settings = _settings()
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


def main() -> None:
    """Console-script entry point."""
    # Before anything logs: no signed-URL token in any log line of any command.
    install_log_redaction()
    app()


if __name__ == "__main__":
    main()
