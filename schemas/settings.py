"""The one settings object of Resonate.

Built once at an entry point (the CLI, a test fixture) and passed down; library
code never reads the environment itself. Every field can be set with an
environment variable ``RESONATE_<FIELD>`` (lists as JSON), so production
addresses (a real Kafka, a remote Triton, a Milvus server) are just other values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.events import ListKind


class Settings(BaseSettings):
    """Every knob of the pipeline, with the embedded-stack defaults."""

    # hide_input_in_errors: a validation error would otherwise print every input value,
    # secrets included, into a traceback or a log.
    model_config = SettingsConfigDict(
        env_prefix="RESONATE_", frozen=True, extra="ignore", hide_input_in_errors=True
    )

    # --- where the components are; empty means "the embedded stack starts one" ---
    kafka_bootstrap: str = Field(
        "",
        description="Kafka bootstrap servers host:port[,host:port]; empty = the embedded "
        "Apache Kafka broker (infra/kafka_broker.py).",
    )
    triton_url: str = Field(
        "",
        description="Triton HTTP endpoint host:port (or http://host:port); https://host:port "
        "= TLS (see triton_ssl_*); empty = embedded pytriton server.",
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
        500,
        description="Longest a consumer fetch waits for data; Kafka answers as soon as data "
        "arrives, so this only paces idle polling.",
    )
    producer_max_batch_bytes: int = Field(
        262144,
        description="Producer batch size per partition (bytes). A user-state record is "
        "~11 KB: at the client default (16 KiB) every state write was a request of its own, "
        "and the worker spent a fifth of its CPU writing produce requests to the socket.",
    )
    producer_linger_ms: int = Field(
        5, description="How long the producer waits to fill a batch (ms): fewer, fuller requests."
    )
    # --- the embedded broker (infra/kafka_broker.py); unused with kafka_bootstrap set ---
    kafka_libs: Path | None = Field(
        None,
        description="Folder of the embedded broker's jars; None = <venv>/kafka/libs, where "
        "infra/setup.sh puts them (version pinned in infra/kafka/pom.xml).",
    )
    kafka_heap_mb: int = Field(512, ge=128, description="Embedded broker's JVM heap (MiB).")
    kafka_retention_ms: int = Field(
        7 * 86400 * 1000,
        ge=60_000,
        description="Embedded broker: records older than this are deleted (every topic but "
        "the catalog deltas; Kafka's own default, so dead letters stay a week).",
    )
    kafka_retention_bytes: int = Field(
        64 * 1024 * 1024,
        ge=1024 * 1024,
        description="Embedded broker: bytes kept per partition at most (oldest segments go "
        "first), so a day-long run keeps flat disk and page cache.",
    )
    deltas_topic: str = Field(
        "track-deltas", description="Internal topic of catalog deltas (read by every worker)."
    )
    max_event_bytes: int = Field(
        64 * 1024,
        ge=1024,
        description="Largest interaction or upload record (key + value + headers) accepted; "
        "a larger one is dead-lettered as 'too-large' and never parsed (README's contract).",
    )
    max_record_bytes: int = Field(
        1_000_000,
        ge=64 * 1024,
        description="Largest record a worker produces (its producer's max request size); "
        "checked at start against the topics' max.message.bytes, and dead letters are cut "
        "to fit it.",
    )
    fold_batch: int = Field(500, description="Interactions folded and refreshed per batch, max.")
    fold_wait_s: float = Field(
        0.01, description="Longest wait to fill a fold batch once its first event arrived."
    )
    catalog_lists_ttl_s: float = Field(
        1.0, description="Popular and fresh lists are recomputed at most this often (s)."
    )
    vector_cache_size: int = Field(
        100_000, description="Track vectors (and 'no vector' answers) cached per worker."
    )
    gc_young_threshold: int = Field(
        50_000,
        ge=700,
        description="Allocations between two young-generation passes of Python's garbage "
        "collector in a worker (Python's default: 700). A refresh allocates thousands of "
        "small objects per listener, so at 700 the collector ran every few interactions "
        "and took about a fifth of the worker's CPU (python -m infra.bench.hotpath).",
    )
    app_id: str = Field("resonate", description="Faust application id (consumer group).")

    # --- recommendation behaviour ---
    top_k: int = Field(10, description="Items per emitted recommendation list.")
    seq_len: int = Field(50, description="Recent events kept per user (L in DMM-HyRec).")
    max_per_artist: int = Field(
        2, ge=0, description="Diversity rule: at most this many per artist (0: no cap)."
    )
    list_kinds: tuple[ListKind, ...] = Field(
        (ListKind.NEW, ListKind.MIX),
        min_length=1,
        description="Kinds of list refreshed per listener (schemas.events.ListKind); each is "
        "its own record on the recommendations topic, so each kind costs a ranking pass and "
        "a record.",
    )
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
        default_factory=list,
        description="host:port that http(s):// audio URIs may point at (a bare host allows "
        "its scheme's default port only).",
    )
    audio_denied_endpoints: list[str] = Field(
        default_factory=list,
        description="host:port never fetched from, even when allowed or redirected to: the "
        "stack's own services (the embedded stack fills it; Kafka, Triton, Milvus, the "
        "metrics and API addresses named in these settings are denied as well).",
    )
    audio_fetch_deadline_s: float = Field(
        20.0, gt=0, description="Longest one audio download may take in all (redirects too)."
    )
    audio_max_bytes: int = Field(
        64 * 1024 * 1024, gt=0, description="Largest audio download, enforced while streaming."
    )
    audio_max_redirects: int = Field(
        3, ge=0, description="Redirect hops followed per download, each checked again."
    )
    max_audio_s: float = Field(
        30.0, description="Audio embedded per upload, seconds (a 30 s preview, as in the papers)."
    )
    upload_batch: int = Field(8, description="Uploads embedded in one Triton batch at most.")
    upload_batch_wait_s: float = Field(0.2, description="Wait this long to fill a batch.")

    # --- failures: retries and dead letters (streams/deadletter.py, docs/reliability.md) ---
    upload_max_attempts: int = Field(
        6,
        description="Attempts of an upload whose audio host (or this one item) failed before "
        "it is dead-lettered; Triton or Milvus outages are waited out and not counted.",
    )
    send_deadline_s: float = Field(
        30.0,
        gt=0,
        description="Longest a dead letter or retry record is retried while the broker does "
        "not acknowledge it; then (or at once, for a failure waiting cannot cure) it goes "
        "to the local spool and its source partition moves on.",
    )
    stall_after_s: float = Field(
        45.0,
        gt=0,
        description="A partition with records waiting whose committed offset has not moved "
        "for this long is stalled: logged, resonate_partition_stalled_seconds, the worker "
        "not ready, and the ResonatePartitionStalled alert (docs/metrics.md).",
    )
    spool_max_bytes: int = Field(
        256 * 1024 * 1024,
        ge=1024 * 1024,
        description="Size bound of the local dead-letter spool (<run_dir>/spool); when full, "
        "sends wait for the broker (the stall alarm says so).",
    )
    retry_backoff_s: float = Field(
        1.0, description="First retry delay (s); doubles per attempt up to retry_backoff_max_s."
    )
    retry_backoff_max_s: float = Field(
        30.0, description="Longest delay between two attempts, and between outage probes (s)."
    )

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
    milvus_mode: Literal["lite", "server"] = Field(
        "lite",
        description="What the embedded stack starts when milvus_uri is empty: Milvus Lite, or "
        "the Milvus 2.3 standalone server from the `milvus` wheel (HNSW, scalar index).",
    )
    milvus_hnsw_m: int = Field(16, description="HNSW M (graph degree) when milvus_index=HNSW.")
    milvus_hnsw_ef_construction: int = Field(
        200, description="HNSW efConstruction when milvus_index=HNSW."
    )
    milvus_hnsw_ef: int = Field(
        128, description="HNSW search ef (raised to k when k is larger) when milvus_index=HNSW."
    )
    milvus_scalar_index: str = Field(
        "",
        description="Scalar index on uploaded_at: STL_SORT (Milvus 2.3), INVERTED (Lite 2.5, "
        "Milvus >= 2.4) or empty = none; the embedded stack fills it for the Milvus it starts.",
    )
    milvus_token: SecretStr = Field(
        SecretStr(""),
        description="Milvus credentials 'user:password' (or an API key) when authentication "
        "is on (from a secret, e.g. RESONATE_MILVUS_TOKEN); empty = none (embedded stack). "
        "Never printed: repr and dumps show '**********'.",
    )
    milvus_consistency: Literal["Bounded", "Session", "Strong", "Eventually"] = Field(
        "Bounded",
        description="Consistency of recommendation reads; Bounded = at most gracefulTime (5 s) "
        "stale, plus read-your-writes after this process' own upserts "
        "(serving/milvus_consistency.py).",
    )

    # --- query API and inspector page (serving/api) ---
    api_enabled: bool = Field(True, description="`resonate up` starts the query API too.")
    api_port: int = Field(8000, description="Query API port; 0 = a free one.")
    api_key: SecretStr = Field(
        SecretStr(""),
        description="Key that writes (POST) must send as X-API-Key; empty = writes open.",
    )
    api_max_upload_bytes: int = Field(
        10 * 1024 * 1024, description="Largest audio file the API accepts (bytes)."
    )
    api_max_upload_s: float = Field(
        600.0, description="Longest audio file the API accepts (seconds of audio)."
    )
    api_history: int = Field(
        20, description="Recent plays/skips/likes the API keeps per listener (inspector)."
    )
    api_seed_tracks: int = Field(
        3, description="Nearest tracks liked on a listener's behalf when seeding from a file."
    )
    worker_metrics_urls: list[str] = Field(
        default_factory=list,
        description="Workers' Prometheus URLs for the inspector's pipeline panel "
        "(the stack sets them; `resonate api` reads run/stack.json when empty).",
    )

    # --- input sanity ---
    event_max_age_s: float = Field(
        365 * 86400.0,
        description="Interactions that occurred longer ago than this (by the worker's clock) are "
        "rejected, not applied: dead-lettered and counted, never fed to latency histograms.",
    )
    event_max_ahead_s: float = Field(
        86400.0,
        description="Interactions dated further in the future than this (clock skew tolerated) "
        "are rejected; uploads dated in the future count as uploaded when first seen.",
    )
    dedupe_horizon_s: float = Field(
        86400.0,
        description="An interaction this much older than the listener's newest one is 'late': "
        "rejected (dead-lettered) instead of risking a second application of a replay.",
    )
    dedupe_max_ids: int = Field(
        256,
        ge=1,
        description="Event ids remembered per listener for replay detection; past it the "
        "listener's floor rises to the oldest remembered event (older ones are 'late').",
    )

    # --- data ---
    data_dir: Path = Field(
        Path("../shared/data"), description="Real data sets (see ../shared/data/README.md)."
    )

    # --- security ---
    # Secrets are SecretStr: repr, logs, model_dump_json and `resonate status` show
    # '**********'; only the client builders (serving/kafka_security.py, the Milvus and
    # Triton clients) call get_secret_value(). Defaults are the embedded stack's: plaintext
    # on loopback, nothing to authenticate.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT",
        description="Kafka client security: SASL_SSL (+ SCRAM) in production, PLAINTEXT for "
        "the embedded broker and a network-isolated internal listener.",
    )
    kafka_sasl_mechanism: Literal["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"] = Field(
        "SCRAM-SHA-512", description="SASL mechanism when the protocol is SASL_*."
    )
    kafka_username: str = Field("", description="SASL user name (SASL_* protocols).")
    kafka_password: SecretStr = Field(
        SecretStr(""), description="SASL password (from a secret, RESONATE_KAFKA_PASSWORD)."
    )
    kafka_ssl_cafile: Path | None = Field(
        None,
        description="PEM CA bundle that signed the brokers' certificates (SSL, SASL_SSL); "
        "None = the system's trusted CAs.",
    )
    kafka_ssl_certfile: Path | None = Field(
        None, description="PEM client certificate for mutual TLS; None = no client certificate."
    )
    kafka_ssl_keyfile: Path | None = Field(
        None, description="PEM private key of kafka_ssl_certfile (unencrypted, file mode 0600)."
    )
    triton_ssl_cafile: Path | None = Field(
        None,
        description="PEM CA bundle of Triton's certificate for an https:// triton_url; "
        "None = the system's trusted CAs.",
    )
    triton_ssl_verify: bool = Field(
        True,
        description="Verify Triton's certificate and host name (https:// only). Turning it "
        "off is for a lab with a self-signed certificate, never production.",
    )

    @model_validator(mode="after")
    def _security_consistent(self) -> Settings:
        """Refuse combinations that would silently send credentials nowhere or in clear."""
        sasl = self.kafka_security_protocol.startswith("SASL_")
        if sasl and not (self.kafka_username and self.kafka_password.get_secret_value()):
            raise ValueError(f"{self.kafka_security_protocol} needs kafka_username/password")
        if (self.kafka_ssl_certfile is None) != (self.kafka_ssl_keyfile is None):
            raise ValueError("kafka_ssl_certfile and kafka_ssl_keyfile go together")
        # Addresses are logged and written to run/stack.json; credentials have fields of
        # their own (SecretStr), so an address carrying them is refused, not redacted.
        for name in ("milvus_uri", "triton_url", "kafka_bootstrap"):
            value = getattr(self, name)
            if "@" in urlsplit(value if "//" in value else f"//{value}").netloc:
                raise ValueError(f"{name}: no user:password@ in addresses; use the secret fields")
        return self

    def topic(self, name: str) -> str:
        """Full topic name with the configured prefix."""
        return f"{self.topic_prefix}{name}"

    def dead_letter_topic(self, name: str) -> str:
        """Where messages of topic ``name`` that cannot be processed are set aside."""
        return self.dead_letter_of(self.topic(name))

    @staticmethod
    def dead_letter_of(full_topic: str) -> str:
        """The dead-letter topic of a topic named in full (prefix included): ``<topic>.dlq``."""
        return f"{full_topic}.dlq"

    def retry_topic(self, name: str) -> str:
        """Where messages of topic ``name`` wait for another attempt."""
        return f"{self.topic(name)}.retry"

    def stack_topics(self) -> list[str]:
        """Every topic the stack creates (Faust creates its internal ones itself)."""
        return [
            self.topic(self.interactions_topic),
            self.topic(self.uploads_topic),
            self.topic(self.recommendations_topic),
            self.dead_letter_topic(self.interactions_topic),
            self.dead_letter_topic(self.uploads_topic),
            self.retry_topic(self.uploads_topic),
        ]
