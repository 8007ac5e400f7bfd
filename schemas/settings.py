"""The one settings object of Resonate.

Built once at an entry point (the CLI, a test fixture) and passed down; library
code never reads the environment itself. Every field can be set with an
environment variable ``RESONATE_<FIELD>`` (lists as JSON), so production
addresses (a real Kafka, a remote Triton, a Milvus server) are just other values.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of the pipeline, with the embedded-stack defaults."""

    model_config = SettingsConfigDict(env_prefix="RESONATE_", frozen=True, extra="ignore")

    # --- where the components are; empty means "the embedded stack starts one" ---
    kafka_bootstrap: str = Field(
        "", description="Kafka bootstrap servers host:port[,host:port]; empty = embedded Tansu."
    )
    triton_url: str = Field(
        "", description="Triton HTTP endpoint host:port; empty = embedded pytriton server."
    )
    milvus_uri: str = Field(
        "", description="Milvus URI (http://host:19530); empty = embedded Milvus Lite."
    )
    run_dir: Path = Field(Path("run"), description="Working folder of the embedded stack.")
    host: str = Field("127.0.0.1", description="Loopback address the embedded stack binds.")
    kafka_port: int = Field(0, description="Embedded broker port; 0 = a free one.")
    triton_http_port: int = Field(0, description="Embedded Triton HTTP port; 0 = a free one.")
    triton_grpc_port: int = Field(0, description="Embedded Triton gRPC port; 0 = a free one.")
    triton_metrics_port: int = Field(0, description="Embedded Triton metrics port; 0 = free.")
    milvus_port: int = Field(0, description="Embedded Milvus Lite port; 0 = a free one.")
    metrics_port: int = Field(
        0, description="Prometheus port of the (first) worker; 0 = a free one."
    )
    workers: int = Field(1, description="Faust workers the embedded stack starts.")

    # --- topics ---
    topic_prefix: str = Field("", description="Prefix for every topic (isolates test runs).")
    interactions_topic: str = Field("interactions", description="Play/skip/like events.")
    uploads_topic: str = Field("track-uploads", description="New-track upload events.")
    recommendations_topic: str = Field("recommendations", description="Refreshed top-K lists.")
    partitions: int = Field(4, description="Partitions of every topic the stack creates.")
    fetch_max_wait_ms: int = Field(
        25, description="Longest a consumer fetch waits for data (Tansu holds fetches)."
    )
    producer_max_batch_bytes: int = Field(
        16384,
        description="Faust producer batch size per partition (the embedded stack sets 1).",
    )
    app_id: str = Field("resonate", description="Faust application id (consumer group).")

    # --- recommendation behaviour ---
    top_k: int = Field(10, description="Items per emitted recommendation list.")
    seq_len: int = Field(50, description="Recent events kept per user (L in DMM-HyRec).")
    max_per_artist: int = Field(2, description="Diversity rule: at most this many per artist.")
    session_gap_s: float = Field(
        1800.0, description="Plays further apart than this are not co-played (seconds)."
    )
    model_version: str = Field(
        "audio-knn+coplay-v1", description="Version string stamped on every recommendation."
    )

    # --- audio ingestion ---
    audio_roots: list[Path] = Field(
        default_factory=list, description="Folders that file:// audio URIs may point into."
    )
    audio_hosts: list[str] = Field(
        default_factory=list, description="Hosts that http(s):// audio URIs may point at."
    )
    max_audio_s: float = Field(
        30.0, description="Audio embedded per upload, seconds (a 30 s preview, as in the papers)."
    )
    upload_batch: int = Field(8, description="Uploads embedded in one Triton batch at most.")
    upload_batch_wait_s: float = Field(0.2, description="Wait this long to fill a batch.")

    # --- models and storage ---
    triton_model: str = Field("musicnn", description="Triton model name of the audio encoder.")
    weights_path: Path = Field(
        Path("run/weights/msd_musicnn.pt"),
        description="Converted MusiCNN weights (made by `resonate convert-musicnn`).",
    )
    user_model_dir: Path | None = Field(
        None,
        description="Folder of trained user-encoder versions (`resonate train --out`); set = "
        "Triton serves the newest as `user_model_name` and fusion adds its candidates.",
    )
    fusion_weights_dir: Path | None = Field(
        None,
        description="Folder of fusion-weights versions (`resonate eval --fusion-weights-out`); "
        "the newest is used and reloaded without a restart. None = the built-in artifact.",
    )
    user_model_name: str = Field("user_encoder", description="Triton name of the user encoder.")
    user_model_top_n: int = Field(100, description="Tracks the user encoder returns per call.")
    user_model_timeout_s: float = Field(
        2.0, description="Timeout of one user-encoder call; on failure fusion falls back."
    )
    milvus_collection: str = Field("tracks", description="Milvus collection of track vectors.")
    milvus_index: str = Field(
        "FLAT",
        description="Index type: FLAT/IVF_FLAT on Milvus Lite, HNSW on a Milvus server.",
    )
    timeout_s: float = Field(30.0, description="Timeout of one Triton or Milvus call.")

    # --- data ---
    data_dir: Path = Field(
        Path("../shared/data"), description="Real data sets (see ../shared/data/README.md)."
    )

    def topic(self, name: str) -> str:
        """Full topic name with the configured prefix."""
        return f"{self.topic_prefix}{name}"
