"""`resonate`: the single entry point of Resonate (see `resonate --help`).

The app and the small commands (stack, worker, API, topics, status, dead letters) live
here; the model commands are in `infra.cli_models`, the measuring ones in
`infra.cli_measure`. All are registered below on this one app, under flat names.
"""

from __future__ import annotations

import asyncio
import json
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from infra import cli_measure, cli_models
from infra.cli_common import cli_settings, configure_logging, exit_on_sigterm
from serving.redact import install_log_redaction

app = typer.Typer(add_completion=False, help="Resonate: real-time music recommendations.")


def up(
    workers: Annotated[int | None, typer.Option(help="Faust workers to start.")] = None,
    partitions: Annotated[int | None, typer.Option(help="Partitions per topic.")] = None,
) -> None:
    """Start the embedded stack and keep it running until Ctrl-C."""
    from infra.stack import EmbeddedStack

    configure_logging()
    settings = cli_settings(workers=workers, partitions=partitions)
    # A SIGTERM during start-up unwinds at once (main's handler) and stops what started.
    with EmbeddedStack(settings=settings) as stack:
        typer.echo(f"stack up; addresses in {stack.run_dir / 'stack.json'}")
        typer.echo(json.dumps(json.loads((stack.run_dir / "stack.json").read_text()), indent=2))
        _wait_for_stop()
        typer.echo("stopping ...")


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

    base = cli_settings()
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
    """Block until Ctrl-C or SIGTERM.

    The SIGTERM handler stays for the rest of the run: a second SIGTERM while the stack
    stops is then ignored instead of cutting the stop short.
    """
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass


def worker() -> None:
    """Run one Faust worker (settings from RESONATE_* variables; `up` starts these)."""
    from models.convert_musicnn import MUSICNN_CARD
    from streams.runtime import run_worker

    configure_logging()
    run_worker(cli_settings(), MUSICNN_CARD)


def api(
    port: Annotated[int | None, typer.Option(help="Port (default: the api_port setting).")] = None,
) -> None:
    """Serve the query API and inspector page (addresses from RESONATE_* or run/stack.json)."""
    from infra.stack import read_state
    from models.convert_musicnn import MUSICNN_CARD
    from serving.api.server import run_api, with_stack_state

    configure_logging()
    settings = cli_settings(api_port=port)
    if not (settings.kafka_bootstrap and settings.milvus_uri and settings.triton_url):
        settings = with_stack_state(settings, read_state(settings.run_dir))
    run_api(settings, MUSICNN_CARD)


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


def topics() -> None:
    """Create the topics (as `up` does) on RESONATE_KAFKA_BOOTSTRAP; idempotent, then exit."""
    from serving.kafka_security import KafkaSecurity
    from serving.kafka_topics import ensure_topics

    configure_logging()
    s = cli_settings()
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
        cli_settings(), worker_metrics=metrics, window_s=window, as_json=as_json
    )
    typer.echo(text)
    raise typer.Exit(code)  # 0 ok, 1 a component unhealthy, 2 an SLO missed


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

    s = cli_settings()
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


# Every command, in the order `resonate --help` lists them. One table rather than decorators
# spread over three modules: the order (and so the help screen) stays what it was before
# the bulkier groups moved to infra.cli_models and infra.cli_measure.
_COMMANDS: tuple[tuple[str, Callable[..., None]], ...] = (
    ("up", up),
    ("demo", demo),
    ("worker", worker),
    ("api", api),
    ("schemas", schemas),
    ("train", cli_models.train),
    ("eval", cli_models.eval_),
    ("eval-audio", cli_models.eval_audio),
    ("eval-genre", cli_models.eval_genre),
    ("skip-panel", cli_models.skip_panel),
    ("convert-musicnn", cli_models.convert_musicnn),
    ("export-triton", cli_models.export_triton),
    ("topics", topics),
    ("status", status),
    ("dlq", dlq),
    ("bench", cli_measure.bench),
    ("replay", cli_measure.replay),
)
for _name, _command in _COMMANDS:
    app.command(_name)(_command)


def main() -> None:
    """Console-script entry point."""
    # Before anything logs: no signed-URL token in any log line of any command.
    install_log_redaction()
    # Before any command starts a child: a SIGTERM'd `bench`, `replay`, `demo` or `up` must
    # stop its embedded stack on the way out, not orphan it.
    exit_on_sigterm()
    app()


if __name__ == "__main__":
    main()
