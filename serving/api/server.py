"""Run the API process (``resonate api``): production collaborators from the settings."""

from __future__ import annotations

import logging
from typing import Any

import uvicorn
from aiokafka import AIOKafkaProducer

from models.spec import EncoderCard
from schemas.settings import Settings
from serving.api.app import create_app
from serving.api.pipeline import PipelinePanel
from serving.api.runtime import ApiDeps
from serving.kafka_security import KafkaSecurity
from serving.milvus_store import TrackStore
from serving.triton_client import AudioEncoderClient

log = logging.getLogger(__name__)


def make_deps(settings: Settings, card: EncoderCard) -> ApiDeps:
    """Milvus, Triton and Kafka clients built from the settings."""
    s = settings
    if not (s.kafka_bootstrap and s.milvus_uri and s.triton_url):
        raise ValueError("the API needs kafka_bootstrap, milvus_uri and triton_url set")
    return ApiDeps(
        settings=s,
        card=card,
        store_factory=lambda: TrackStore.from_settings(s, dim=card.embed_dim),
        encoder_factory=lambda: AudioEncoderClient(
            url=s.triton_url,
            model_name=s.triton_model,
            timeout_s=s.timeout_s,
            ssl_cafile=s.triton_ssl_cafile,
            ssl_verify=s.triton_ssl_verify,
        ),
        producer_factory=lambda: AIOKafkaProducer(
            bootstrap_servers=s.kafka_bootstrap,
            acks="all",
            **KafkaSecurity.from_settings(s).aiokafka(),
        ),
        panel=PipelinePanel(urls=s.worker_metrics_urls),
    )


def with_stack_state(settings: Settings, state: dict[str, Any]) -> Settings:
    """Fill unset addresses from a running ``resonate up``'s ``run/stack.json``."""
    s = settings
    return s.model_copy(
        update={
            "kafka_bootstrap": s.kafka_bootstrap or state["kafka_bootstrap"],
            "milvus_uri": s.milvus_uri or state["milvus_uri"],
            "triton_url": s.triton_url or state["triton_url"],
            "topic_prefix": s.topic_prefix or state.get("topic_prefix", ""),
            "worker_metrics_urls": s.worker_metrics_urls or state.get("worker_metrics", []),
        }
    )


def run_api(settings: Settings, card: EncoderCard) -> None:
    """Serve until SIGTERM/SIGINT on ``host:api_port``."""
    app = create_app(deps=make_deps(settings, card))
    if not settings.api_key.get_secret_value():
        log.warning("api_key is not set: seeding (the only write) needs no key")
    log.info("query API on http://%s:%d (inspector: /inspector)", settings.host, settings.api_port)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.api_port,
        log_config=None,  # the process's logging setup (the CLI's) stays in charge
        timeout_graceful_shutdown=3,  # open SSE streams must not hold a shutdown
    )
