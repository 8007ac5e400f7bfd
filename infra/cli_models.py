"""`resonate` commands on models: train, eval, eval-audio, eval-genre, skip-panel, convert-musicnn,
export-triton.

Plain functions; `infra.cli` registers them on its app (in `resonate --help` order), so the
command names stay flat (`resonate eval`, not `resonate models eval`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from infra.cli_common import cli_settings, configure_logging


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

    configure_logging()
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

    configure_logging()
    if dataset not in DATASETS:
        raise typer.BadParameter(f"--dataset must be one of {', '.join(DATASETS)}")
    names = models.split(",")
    if unknown := [m for m in names if m not in MODELS]:
        raise typer.BadParameter(f"unknown models {unknown}; choose from {', '.join(MODELS)}")
    data_dir = cli_settings().data_dir
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


def eval_audio(
    out: Annotated[Path | None, typer.Option(help="Write the figures as JSON here.")] = None,
    audio_dir: Annotated[
        Path | None, typer.Option(help="Clips with manifest.csv; default <data_dir>/audio.")
    ] = None,
) -> None:
    """Same-track and same-style retrieval of the real clips: MusiCNN vs tags, MFCC, random."""
    from models.audio_eval import evaluate_audio, markdown

    configure_logging()
    settings = cli_settings()
    result = evaluate_audio(audio_dir or settings.data_dir / "audio", settings.weights_path)
    typer.echo(markdown(result))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))


def eval_genre(
    out: Annotated[Path | None, typer.Option(help="Write the figures as JSON here.")] = None,
    audio_dir: Annotated[
        Path | None, typer.Option(help="Clips with manifest.csv; default <data_dir>/audio.")
    ] = None,
) -> None:
    """Genre from audio vs the clips' styles, and an HPSS front end on clip retrieval."""
    from models.genre_eval import evaluate_genre, markdown

    configure_logging()
    settings = cli_settings()
    result = evaluate_genre(audio_dir or settings.data_dir / "audio", settings.weights_path)
    typer.echo(markdown(result))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))


def skip_panel(
    out: Annotated[Path | None, typer.Option(help="Write the figures as JSON here.")] = None,
    audio_dir: Annotated[
        Path | None, typer.Option(help="Clips with manifest.csv; default <data_dir>/audio.")
    ] = None,
    embeddings: Annotated[
        Path | None, typer.Option(help="Reuse (or write) the clips' MusiCNN vectors, .npz.")
    ] = None,
    seeds: Annotated[int, typer.Option(help="Listeners per (liked, disliked) style pair.")] = 5,
    first_seed: Annotated[
        int, typer.Option(help="First listener seed (5 on: a panel the rules were not chosen on).")
    ] = 0,
) -> None:
    """SIMULATED listeners on the real clips: disliked style's share of lists after skips."""
    from infra.skip_panel import clip_vectors, markdown, run_panel
    from models.audio_eval import read_manifest

    configure_logging()
    settings = cli_settings()
    where = audio_dir or settings.data_dir / "audio"
    vectors = clip_vectors(where, settings.weights_path, embeddings)
    result = run_panel(vectors, read_manifest(where), seeds=seeds, first_seed=first_seed)
    typer.echo(markdown(result))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))


def convert_musicnn(
    out: Annotated[Path | None, typer.Option(help="Where to write the weights.")] = None,
) -> None:
    """Convert MusiCNN's TensorFlow checkpoint (musicnn wheel) to PyTorch weights, once."""
    from models.convert_musicnn import convert

    configure_logging()
    path = convert(out or cli_settings().weights_path)
    typer.echo(str(path))


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

    configure_logging()
    settings = cli_settings()
    repo = out or settings.run_dir / "model_repository"
    export_command(weights or settings.weights_path, repo)
    user_dir = user_model_dir or settings.user_model_dir
    if user_dir is not None:
        folder, version = export_user_encoder(
            user_dir, repo, name=settings.user_model_name, top_n=settings.user_model_top_n
        )
        typer.echo(f"{folder} (version {version})")
