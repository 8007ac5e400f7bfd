"""``resonate status``: one screen on a running stack, for an SRE.

Reads the addresses from ``<run_dir>/stack.json`` (written by ``resonate up``) or from the
settings (production: ``RESONATE_KAFKA_BOOTSTRAP`` etc. plus ``--metrics URL`` per worker),
then asks every component directly:

* health: Kafka (admin metadata), Milvus (collections, rows), Triton (server and each
  model ready, versions served), every worker (``/metrics`` answers, ``ready`` gauge);
* consumer lag per topic and partition (``streams.lag.LagReader``);
* rates over ``window_s`` (two scrapes of every worker: events by outcome,
  recommendations, dead letters);
* latency percentiles since the workers started, from their histograms, against the SLOs
  (``infra.slo``).

Every probe has a short timeout and reports a failure instead of raising, so a half-broken
stack still gets a full screen.
"""

from __future__ import annotations

import json
import math
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from infra.slo import SLOS
from schemas.settings import Settings
from serving.kafka_security import PLAINTEXT, KafkaSecurity
from serving.redact import redact_text
from serving.tls import split_triton_url, triton_sync_tls
from streams.lag import LagError, LagReader, PartitionLag

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@dataclass(frozen=True)
class Target:
    """Where the stack's pieces are."""

    kafka_bootstrap: str
    milvus_uri: str
    triton_url: str
    worker_metrics: tuple[str, ...]
    group_id: str
    topics: tuple[str, ...]
    collection: str
    models: tuple[str, ...]
    milvus_token: SecretStr = SecretStr("")  # repr shows '**********'
    triton_ssl_cafile: Path | None = None
    triton_ssl_verify: bool = True
    kafka_security: KafkaSecurity = PLAINTEXT  # its repr shows no password either


@dataclass(frozen=True)
class Health:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class Latency:
    name: str
    quantile: float
    value_s: float | None  # None = no observations yet
    slo_s: float

    @property
    def ok(self) -> bool:
        return self.value_s is None or self.value_s <= self.slo_s


@dataclass
class StatusReport:
    health: list[Health] = field(default_factory=list)
    lag: list[PartitionLag] = field(default_factory=list)
    rates: dict[str, float] = field(default_factory=dict)
    latency: list[Latency] = field(default_factory=list)
    models: dict[str, list[str]] = field(default_factory=dict)
    dead_letters: dict[str, float] = field(default_factory=dict)
    # "topic/partition" -> seconds without progress (resonate_partition_stalled_seconds > 0)
    stalled: dict[str, float] = field(default_factory=dict)
    waiting: list[str] = field(default_factory=list)  # what agents wait on: send, dependency
    send_errors: dict[str, float] = field(default_factory=dict)  # "topic error" -> count

    @property
    def healthy(self) -> bool:
        """Every component answers (and every worker is ready)."""
        return all(h.ok for h in self.health)

    @property
    def ok(self) -> bool:
        return self.healthy and all(lat.ok for lat in self.latency)

    @property
    def exit_code(self) -> int:
        """0 all fine, 1 a component is unhealthy, 2 healthy but an SLO is missed."""
        return 0 if self.ok else 1 if not self.healthy else 2

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["lag"] = [{**asdict(p), "lag": p.lag} for p in self.lag]
        out["ok"] = self.ok
        out["healthy"] = self.healthy
        return out

    def render(self) -> str:
        """The one screen (plain text, fits 100 columns)."""
        verdict = "OK" if self.ok else "UNHEALTHY" if not self.healthy else "SLO MISSED"
        lines = [f"Resonate status: {verdict}", "", "components"]
        for h in self.health:
            lines.append(f"  {'ok ' if h.ok else 'BAD'} {h.name:<22} {redact_text(h.detail)}")
        lines += ["", "consumer lag (committed -> end)"]
        if not self.lag:
            lines.append("  (no partitions reported)")
        for p in self.lag:
            committed = "-" if p.committed < 0 else str(p.committed)
            lines.append(f"  {p.topic}/{p.partition:<3} {p.lag:>8}   ({committed} -> {p.end})")
        lines += ["", "rates (per second)"]
        for name, value in sorted(self.rates.items()):
            lines.append(f"  {name:<40} {value:8.2f}")
        lines += ["", "latency since the workers started (SLO)"]
        for lat in self.latency:
            shown = "no data" if lat.value_s is None else f"{lat.value_s * 1000:.0f} ms"
            flag = "ok " if lat.ok else "BAD"
            lines.append(
                f"  {flag} {lat.name} p{lat.quantile * 100:g}: {shown} (SLO {lat.slo_s:g} s)"
            )
        lines += ["", "models served"]
        for name, versions in sorted(self.models.items()):
            lines.append(f"  {name}: versions {', '.join(versions) or '-'}")
        lines += ["", "stalled partitions (records waiting, committed offset not moving)"]
        if not self.stalled:
            lines.append("  none")
        in_hand = {f"{p.topic}/{p.partition}": p.committed for p in self.lag}
        for key, since in sorted(self.stalled.items()):
            lines.append(
                f"  {key}: offset {in_hand.get(key, '?')} in hand for {since:.0f} s"
                f"; agents waiting on: {', '.join(self.waiting) or 'nothing reported'}"
            )
        for key, n in sorted(self.send_errors.items()):
            lines.append(f"  retrying a write: {key} ({n:.0f} failed attempts)")
        lines += ["", "dead letters (total)"]
        if not self.dead_letters:
            lines.append("  none")
        for key, value in sorted(self.dead_letters.items()):
            lines.append(f"  {key:<40} {value:8.0f}")
        return "\n".join(lines)


def target_from(settings: Settings, *, worker_metrics: list[str] | None = None) -> Target:
    """The stack of ``resonate up`` (``run_dir/stack.json``) or the settings' addresses."""
    s = settings
    state_path = s.run_dir / "stack.json"
    state: dict[str, Any] = json.loads(state_path.read_text()) if state_path.is_file() else {}
    topics = state.get("topics") or {}
    models = [s.triton_model] + ([s.user_model_name] if s.user_model_dir is not None else [])
    return Target(
        kafka_bootstrap=state.get("kafka_bootstrap") or s.kafka_bootstrap,
        milvus_uri=state.get("milvus_uri") or s.milvus_uri,
        triton_url=state.get("triton_url") or s.triton_url,
        worker_metrics=tuple(worker_metrics or state.get("worker_metrics") or ()),
        group_id=f"{state.get('topic_prefix', s.topic_prefix)}{s.app_id}",
        topics=(
            topics.get("interactions") or s.topic(s.interactions_topic),
            topics.get("uploads") or s.topic(s.uploads_topic),
        ),
        collection=s.milvus_collection,
        models=tuple(models),
        milvus_token=s.milvus_token,
        triton_ssl_cafile=s.triton_ssl_cafile,
        triton_ssl_verify=s.triton_ssl_verify,
        kafka_security=KafkaSecurity.from_settings(s),
    )


def _samples(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = float(sample.value)
    return out


def _scrape(url: str, timeout_s: float) -> Samples:
    with urllib.request.urlopen(url, timeout=timeout_s) as resp:
        return _samples(resp.read().decode())


def _sum_by(samples: list[Samples], name: str, label: str | None) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for s in samples:
        for (n, labels), value in s.items():
            if n == name:
                out[dict(labels).get(label, "") if label else ""] += value
    return dict(out)


def histogram_quantile(q: float, buckets: dict[float, float]) -> float | None:
    """Prometheus' ``histogram_quantile`` on cumulative ``{upper bound: count}``."""
    if not buckets:
        return None
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for b in bounds:
        count = buckets[b]
        if count >= rank:
            if math.isinf(b):
                return prev_bound  # like Prometheus: the highest finite bound
            width = count - prev_count
            return prev_bound + (b - prev_bound) * ((rank - prev_count) / width if width else 1)
        prev_bound, prev_count = b, count
    return prev_bound


def _buckets(samples: list[Samples], histogram: str) -> dict[float, float]:
    by_le = _sum_by(samples, f"{histogram}_bucket", "le")
    return {float(le): v for le, v in by_le.items()}


def _probe(name: str, fn: Callable[[], str]) -> Health:
    try:
        return Health(name, True, fn())
    except Exception as exc:  # any failure is a finding, not a crash
        return Health(name, False, f"{type(exc).__name__}: {exc}"[:200])


def collect(target: Target, *, window_s: float = 2.0, timeout_s: float = 3.0) -> StatusReport:
    """Probe everything once (two worker scrapes ``window_s`` apart)."""
    report = StatusReport()

    lag: list[PartitionLag] = []

    def kafka() -> str:
        nonlocal lag
        try:
            with LagReader(
                bootstrap=target.kafka_bootstrap,
                group_id=target.group_id,
                topics=target.topics,
                timeout_s=timeout_s,
                security=target.kafka_security,
            ) as reader:
                lag = reader.read()
        except LagError as exc:
            raise ConnectionError(str(exc)) from exc
        return f"{target.kafka_bootstrap}, group {target.group_id}"

    def milvus() -> str:
        from pymilvus import MilvusClient

        client = MilvusClient(
            uri=target.milvus_uri, token=target.milvus_token.get_secret_value(), timeout=timeout_s
        )
        try:
            names = client.list_collections(timeout=timeout_s)
            rows = ""
            if target.collection in names:
                stats = client.get_collection_stats(target.collection, timeout=timeout_s)
                rows = f", {target.collection}: {stats.get('row_count', '?')} rows"
            return f"{target.milvus_uri}{rows}"
        finally:
            client.close()

    def triton() -> str:
        import tritonclient.http as httpclient

        client = httpclient.InferenceServerClient(
            url=split_triton_url(target.triton_url)[0],
            connection_timeout=timeout_s,
            network_timeout=timeout_s,
            **triton_sync_tls(
                target.triton_url, cafile=target.triton_ssl_cafile, verify=target.triton_ssl_verify
            ),
        )
        try:
            if not client.is_server_ready():
                raise ConnectionError("server not ready")
            for model in target.models:
                meta = client.get_model_metadata(model)
                report.models[model] = [str(v) for v in meta.get("versions", [])]
                if not client.is_model_ready(model):
                    raise ConnectionError(f"model {model} not ready")
            return f"{target.triton_url}, models {', '.join(target.models)}"
        finally:
            client.close()

    report.health.append(_probe("kafka", kafka))
    report.health.append(_probe("milvus", milvus))
    report.health.append(_probe("triton", triton))
    report.lag = lag

    first: dict[str, Samples] = {}
    for url in target.worker_metrics:
        try:
            first[url] = _scrape(url, timeout_s)
        except Exception as exc:
            report.health.append(Health(f"worker {url}", False, f"{type(exc).__name__}: {exc}"))
    t0 = time.monotonic()
    if first:
        time.sleep(window_s)  # the rate window between two scrapes, not a wait for a state
    second: dict[str, Samples] = {}
    for url in first:
        try:
            second[url] = _scrape(url, timeout_s)
        except Exception as exc:
            report.health.append(Health(f"worker {url}", False, f"{type(exc).__name__}: {exc}"))
    elapsed = max(time.monotonic() - t0, 1e-6)
    for url, samples in second.items():
        ready = samples.get(("resonate_worker_ready", ()), 0.0) == 1.0
        report.health.append(Health(f"worker {url}", ready, "ready" if ready else "up, not ready"))

    before, after = [first[u] for u in second], list(second.values())
    for name, label, prefix in (
        ("resonate_events_total", None, "events"),
        ("resonate_recommendations_total", None, "recommendations"),
        ("resonate_dead_letters_total", None, "dead letters"),
    ):
        a, b = _sum_by(after, name, label), _sum_by(before, name, label)
        report.rates[prefix] = (a.get("", 0.0) - b.get("", 0.0)) / elapsed
    outcomes_a = _sum_by(after, "resonate_events_total", "outcome")
    outcomes_b = _sum_by(before, "resonate_events_total", "outcome")
    for outcome, value in outcomes_a.items():
        report.rates[f"events {outcome}"] = (value - outcomes_b.get(outcome, 0.0)) / elapsed

    for slo in SLOS:
        q = histogram_quantile(slo.quantile, _buckets(after, slo.histogram))
        report.latency.append(Latency(slo.name, slo.quantile, q, slo.max_s))

    for s in after:
        for (n, labels), value in s.items():
            d = dict(labels)
            if n == "resonate_dead_letters_total":
                key = f"{d.get('topic', '')} {d.get('reason', '')}"
                report.dead_letters[key] = report.dead_letters.get(key, 0.0) + value
            elif n == "resonate_partition_stalled_seconds" and value > 0:
                key = f"{d.get('topic', '')}/{d.get('partition', '')}"
                report.stalled[key] = max(report.stalled.get(key, 0.0), value)
            elif n == "resonate_agent_waiting" and value > 0:
                report.waiting = sorted({*report.waiting, d.get("on", "?")})
            elif n == "resonate_send_errors_total" and value > 0:
                key = f"{d.get('topic', '')} {d.get('error', '')}"
                report.send_errors[key] = report.send_errors.get(key, 0.0) + value
    return report


def status_command(
    settings: Settings,
    *,
    worker_metrics: list[str] | None,
    window_s: float,
    as_json: bool,
) -> tuple[str, int]:
    """Text (or JSON) of the status screen and the exit code (``StatusReport.exit_code``)."""
    report = collect(target_from(settings, worker_metrics=worker_metrics), window_s=window_s)
    text = json.dumps(report.to_dict(), indent=2) if as_json else report.render()
    return text, report.exit_code
