"""`resonate`: the single entry point of Resonate (see `resonate --help`)."""

from __future__ import annotations

import json
import logging
import signal
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from schemas.settings import Settings

app = typer.Typer(add_completion=False, help="Resonate: real-time music recommendations.")


def _logging(verbose: bool = False) -> None:
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
) -> None:
    """Start the stack, upload a catalog, simulate listeners, print live recommendations."""
    from infra.demo import folder_catalog, run_demo, synth_catalog
    from infra.stack import EmbeddedStack
    from models.convert_musicnn import MUSICNN_CARD

    _logging()
    base = _settings()
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
    with EmbeddedStack(settings=settings) as stack:
        run_demo(
            stack.settings,
            catalog=catalog,
            dim=MUSICNN_CARD.embed_dim,
            echo=typer.echo,
            listeners=listeners,
        )


@app.command()
def worker() -> None:
    """Run one Faust worker (settings from RESONATE_* variables; `up` starts these)."""
    from infra.worker import run_worker
    from models.convert_musicnn import MUSICNN_CARD

    _logging()
    run_worker(_settings(), MUSICNN_CARD)


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
) -> None:
    """Export MusiCNN as TorchScript + config.pbtxt for a production Triton (libtorch)."""
    from models.export import export_command

    _logging()
    settings = _settings()
    export_command(weights or settings.weights_path, out or settings.run_dir / "model_repository")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
