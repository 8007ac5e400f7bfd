"""One Faust worker process: metrics endpoint, real clients, the streams app."""

from __future__ import annotations

import logging
from typing import Any

import faust

from infra.lag import start_lag_collector
from infra.milvus_server import store_options
from models.spec import EncoderCard
from schemas.settings import Settings
from serving.kafka_security import PLAINTEXT, KafkaSecurity
from serving.milvus_store import TrackStore
from serving.triton_client import AudioEncoderClient
from serving.user_encoder_client import UserEncoderClient
from streams.app import build_app
from streams.catalog import Catalog, CatalogFeed
from streams.clients import Deps
from streams.delivery import guard_deliveries
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
            **store_options(settings),
        )

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


def limit_fetch_wait(ms: int) -> None:
    """Make Faust's consumers long-poll for at most ``ms`` instead of its fixed 1,500 ms.

    Why: Tansu does not answer a waiting fetch when new data arrives; it holds it for
    the full ``fetch_max_wait_ms``. Faust hard-codes 1,500 ms, so every hop of the
    pipeline (interactions -> refresh -> fusion) would cost up to 1.5 s on the embedded
    broker. Kafka itself answers at once, so a short wait is harmless there. faust has
    no setting for it; this patches the one factory that builds the worker consumer.
    """
    from faust.transport.drivers import aiokafka as driver

    original = driver.AIOKafkaConsumerThread._create_worker_consumer

    def create(self: Any, transport: Any) -> Any:
        consumer = original(self, transport)
        consumer._fetch_max_wait_ms = ms  # read by AIOKafkaConsumer.start() -> Fetcher
        return consumer

    driver.AIOKafkaConsumerThread._create_worker_consumer = create  # type: ignore[method-assign]


def exact_recovery_highwaters(bootstrap: str, *, security: KafkaSecurity = PLAINTEXT) -> None:
    """Make Faust's changelog recovery read up to the true end of each changelog partition.

    Why: Tansu answers ListOffsets(latest) with the last batch's base offset + 1. Recovery
    would stop inside the last batch and then meet "persisted offset > highwater"
    (ConsistencyError) after a rebalance. Forcing one record per batch avoided that but
    made Tansu pay per record (it pays per batch it holds). ``correct_end_offsets`` reads
    the last batch instead; on Kafka the answer is unchanged.
    """
    from faust.tables import recovery

    from streams.offsets import correct_end_offsets

    async def build_highwaters(
        self: Any, consumer: Any, tps: Any, destination: Any, title: str
    ) -> None:
        reported = await consumer.highwaters(*tps)
        # Strict and patient: a guessed (short) highwater would recover an old state under
        # committed input offsets and lose the events in between; failing the recovery
        # makes the worker restart instead.
        true = await correct_end_offsets(
            bootstrap, reported, security=security, timeout_s=60.0, strict=True
        )
        # Faust's own convention (see Recovery._build_highwaters): highwater = end - 1.
        highwaters = {tp: true.get(tp, 0) - 1 for tp in reported}
        self.log.info("highwaters for %s changelog partitions: %s", title, highwaters)
        destination.clear()
        destination.update(highwaters)

    recovery.Recovery._build_highwaters = build_highwaters  # type: ignore[method-assign]


def run_worker(settings: Settings, card: EncoderCard) -> None:
    """Serve /metrics and run the Faust worker until SIGTERM/SIGINT."""
    limit_fetch_wait(settings.fetch_max_wait_ms)
    security = KafkaSecurity.from_settings(settings)
    exact_recovery_highwaters(settings.kafka_bootstrap, security=security)
    metrics = Metrics()

    def reread(topic: str) -> None:
        metrics.rereads.labels(topic=topic.removeprefix(settings.topic_prefix)).inc()

    guard_deliveries(on_reread=reread)
    metrics.serve(port=settings.metrics_port, host=settings.host)
    log.info("worker metrics on http://%s:%d/metrics", settings.host, settings.metrics_port)
    app = build_app(make_deps(settings, card, metrics))
    start_lag_collector(
        bootstrap=settings.kafka_bootstrap,
        group_id=f"{settings.topic_prefix}{settings.app_id}",  # Faust's group id
        topics=[
            settings.topic(settings.interactions_topic),
            settings.topic(settings.uploads_topic),
        ],
        metrics=metrics,
        timeout_s=settings.timeout_s,
        records_warn=settings.broker_records_warn,
        security=security,
    )
    # faust.Worker installs the signal handlers and runs the app's event loop.
    faust.Worker(app, loglevel="INFO", quiet=True).execute_from_commandline()
