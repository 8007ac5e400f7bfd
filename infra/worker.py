"""One Faust worker process: metrics endpoint, real clients, the streams app."""

from __future__ import annotations

import logging

import faust

from models.spec import EncoderCard
from schemas.settings import Settings
from serving.milvus_store import TrackStore
from serving.triton_client import AudioEncoderClient
from streams.app import Deps, build_app
from streams.metrics import Metrics

log = logging.getLogger(__name__)


def make_deps(settings: Settings, card: EncoderCard, metrics: Metrics) -> Deps:
    """Production collaborators: Milvus and Triton clients built from settings."""
    if not (settings.kafka_bootstrap and settings.milvus_uri and settings.triton_url):
        raise ValueError("a worker needs kafka_bootstrap, milvus_uri and triton_url set")

    def store() -> TrackStore:
        return TrackStore(
            uri=settings.milvus_uri,
            collection=settings.milvus_collection,
            dim=card.embed_dim,
            timeout_s=settings.timeout_s,
            index_type=settings.milvus_index,
        )

    def encoder() -> AudioEncoderClient:
        return AudioEncoderClient(
            url=settings.triton_url, model_name=settings.triton_model, timeout_s=settings.timeout_s
        )

    return Deps(
        settings=settings, card=card, metrics=metrics, store_factory=store, encoder_factory=encoder
    )


def run_worker(settings: Settings, card: EncoderCard) -> None:
    """Serve /metrics and run the Faust worker until SIGTERM/SIGINT."""
    metrics = Metrics()
    metrics.serve(port=settings.metrics_port, host=settings.host)
    log.info("worker metrics on http://%s:%d/metrics", settings.host, settings.metrics_port)
    app = build_app(make_deps(settings, card, metrics))
    # faust.Worker installs the signal handlers and runs the app's event loop.
    faust.Worker(app, loglevel="INFO", quiet=True).execute_from_commandline()
