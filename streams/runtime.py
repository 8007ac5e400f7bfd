"""The production worker process: real clients built from settings, the record limit the
topics allow, the metrics endpoint, the lag collector, then the Faust app until SIGTERM.

What ``resonate worker`` (``infra/cli.py``) runs, and so what every worker of the embedded
stack and of a deployment runs; the launchers only choose the settings.
"""

from __future__ import annotations

import gc
import logging

import faust

from models.spec import EncoderCard
from schemas.settings import Settings
from serving.kafka_security import KafkaSecurity
from serving.kafka_topics import message_limits, record_limit
from serving.milvus_store import TrackStore
from serving.triton_client import AudioEncoderClient
from serving.user_encoder_client import UserEncoderClient
from streams.app import build_app
from streams.catalog import Catalog, CatalogFeed
from streams.clients import Deps
from streams.deadletter import LETTER_OVERHEAD
from streams.framework import install_corrections
from streams.lag import start_lag_collector
from streams.metrics import Metrics

log = logging.getLogger(__name__)


def make_deps(settings: Settings, card: EncoderCard, metrics: Metrics) -> Deps:
    """Production collaborators: Milvus and Triton clients built from settings."""
    if not (settings.kafka_bootstrap and settings.milvus_uri and settings.triton_url):
        raise ValueError("a worker needs kafka_bootstrap, milvus_uri and triton_url set")

    def store() -> TrackStore:
        return TrackStore.from_settings(settings, dim=card.embed_dim)

    def encoder() -> AudioEncoderClient:
        return AudioEncoderClient(
            url=settings.triton_url,
            model_name=settings.triton_model,
            timeout_s=settings.timeout_s,
            ssl_cafile=settings.triton_ssl_cafile,
            ssl_verify=settings.triton_ssl_verify,
        )

    def user_encoder() -> UserEncoderClient:
        return UserEncoderClient(
            url=settings.triton_url,
            model_name=settings.user_model_name,
            timeout_s=settings.user_model_timeout_s,
            ssl_cafile=settings.triton_ssl_cafile,
            ssl_verify=settings.triton_ssl_verify,
        )

    def feed(catalog: Catalog) -> CatalogFeed:
        return CatalogFeed(
            bootstrap=settings.kafka_bootstrap,
            topic=settings.topic(settings.deltas_topic),
            catalog=catalog,
            fetch_max_wait_ms=settings.fetch_max_wait_ms,
            security=KafkaSecurity.from_settings(settings),
        )

    return Deps(
        settings=settings,
        card=card,
        metrics=metrics,
        store_factory=store,
        encoder_factory=encoder,
        # Only with a trained model configured: otherwise fusion stays training-free.
        user_encoder_factory=user_encoder if settings.user_model_dir is not None else None,
        feed_factory=feed,
    )


def fit_record_limit(settings: Settings, security: KafkaSecurity) -> Settings:
    """Settings whose ``max_record_bytes`` fits every topic the worker writes, as the
    broker configures them (read at start): a dead letter sized against the producer alone
    would still be refused by a topic with a smaller ``max.message.bytes``."""
    s = settings
    ours = [
        s.dead_letter_topic(s.interactions_topic),
        s.dead_letter_topic(s.uploads_topic),
        s.retry_topic(s.uploads_topic),
        s.topic(s.recommendations_topic),
        s.topic(s.deltas_topic),
    ]
    limits = message_limits(s.kafka_bootstrap, ours, timeout_s=s.timeout_s, security=security)
    floor = s.max_event_bytes + LETTER_OVERHEAD
    effective = record_limit(s.max_record_bytes, limits, floor=floor)
    if effective < s.max_record_bytes:
        log.warning("records cut to %d bytes: topic limits %s", effective, limits)
    return s.model_copy(update={"max_record_bytes": effective})


def tune_gc(settings: Settings) -> None:
    """The collector's pace for a worker: young passes every ``gc_young_threshold``
    allocations, and what exists at start (modules, the app, its clients) frozen out of
    every later pass.

    Why: the hot path makes short-lived lists, dicts and models by the thousand per batch
    and almost no reference cycles (they die by reference counting), while every full pass
    walks the whole user-state table; at Python's default the passes cost the worker about
    a fifth of its CPU (docs/performance.md)."""
    _, middle, old = gc.get_threshold()
    gc.set_threshold(settings.gc_young_threshold, middle, old)
    gc.freeze()


def run_worker(settings: Settings, card: EncoderCard) -> None:
    """Serve /metrics and run the Faust worker until SIGTERM/SIGINT."""
    security = KafkaSecurity.from_settings(settings)
    settings = fit_record_limit(settings, security)
    metrics = Metrics()

    def reread(topic: str) -> None:
        metrics.rereads.labels(topic=topic.removeprefix(settings.topic_prefix)).inc()

    install_corrections(on_reread=reread)
    metrics.serve(port=settings.metrics_port, host=settings.host)
    log.info("worker metrics on http://%s:%d/metrics", settings.host, settings.metrics_port)
    app = build_app(make_deps(settings, card, metrics))
    start_lag_collector(
        bootstrap=settings.kafka_bootstrap,
        group_id=f"{settings.topic_prefix}{settings.app_id}",  # Faust's group id
        topics=[
            settings.topic(settings.interactions_topic),
            settings.topic(settings.uploads_topic),
            settings.retry_topic(settings.uploads_topic),
        ],
        metrics=metrics,
        timeout_s=settings.timeout_s,
        stall_after_s=settings.stall_after_s,
        security=security,
    )
    tune_gc(settings)
    metrics.time_gc()
    # faust.Worker installs the signal handlers and runs the app's event loop.
    faust.Worker(app, loglevel="INFO", quiet=True).execute_from_commandline()
