"""The SRE's view of a running embedded stack: a real Prometheus (Debian's binary) scrapes
it while events flow, with the production alert rules loaded; ``resonate status`` reads it.

Waits are bounded and poll for the state they need; nothing sleeps to make a test pass.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from infra.demo import Bus
from infra.procs import StartupError, log_tail
from infra.prometheus_proc import PrometheusServer
from infra.stack import PROJECT_ROOT, EmbeddedStack, settings_env
from schemas.settings import Settings
from streams.lag import LagReader
from tests.integration.events import answers, clip_uri, play, poll, upload, wait_stored

CLIPS = [
    "fretsonfire-songs-sectoid__Metal_madness__0",
    "fretsonfire-songs-sectoid__Metal_madness__1",
    "singularity-music__Nebula__0",
]


@pytest.fixture(scope="module")
def stack_options(data_dir: Path) -> dict[str, Any]:
    # A small spool, so the stall test can fill it (see the last test).
    return {
        "audio_roots": [(data_dir / "audio").resolve()],
        "workers": 1,
        "spool_max_bytes": 1024 * 1024,
        "send_deadline_s": 2.0,
    }


@pytest.fixture(scope="module")
def traffic(stack: EmbeddedStack, bus: Bus, data_dir: Path) -> dict[str, Any]:
    """A few uploads and plays, all answered: the histograms and the lag have data."""
    s = stack.settings
    for clip in CLIPS:
        upload(bus, s, clip, clip_uri(data_dir, clip), artist_id=clip.rsplit("__", 1)[0])
    bus.flush()
    assert len(wait_stored(s, CLIPS, timeout_s=180)) == len(CLIPS)
    t0 = datetime.now(UTC)
    events = {
        play(bus, s, f"u-{uuid.uuid4().hex[:6]}", CLIPS[i % 3], "play", t0 + timedelta(seconds=i))
        for i in range(6)
    }
    answers(bus, events, timeout_s=120)
    return {"events": events}


@pytest.fixture(scope="module")
def prometheus(
    stack: EmbeddedStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrometheusServer]:
    folder = tmp_path_factory.mktemp("prometheus")
    server = PrometheusServer(
        jobs={
            "resonate-workers": [w.metrics_url for w in stack.workers],
            "triton": [stack.triton_metrics_url],
        },
        data_dir=folder,
        log_path=folder / "prometheus.log",
    )
    try:
        server.start()
    except StartupError as exc:
        pytest.fail(f"Prometheus did not start: {exc}\n{log_tail(server.log_path)}")
    try:
        yield server
    finally:
        server.stop()


def _committed(s: Settings) -> dict[int, int]:
    with LagReader(
        bootstrap=s.kafka_bootstrap, group_id=f"{s.topic_prefix}{s.app_id}", timeout_s=10
    ) as reader:
        topic = s.topic(s.interactions_topic)
        return {p.partition: p.committed for p in reader.read() if p.topic == topic}


def _status(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`resonate status ARGS` against the stack whose settings are in ``env``."""
    return subprocess.run(
        [sys.executable, "-m", "infra.cli", "status", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_status_screen_of_the_embedded_stack(stack: EmbeddedStack, traffic: dict) -> None:
    s = stack.settings
    # Faust commits every few seconds: wait for the plays' commits to reach the broker.
    poll("interactions committed", lambda: sum(_committed(s).values()) >= len(traffic["events"]))
    env = {**os.environ, **settings_env(stack.settings)}
    proc = _status(env, "--json", "--window", "1")
    # 2 = healthy but an SLO missed: a cold first upload on 2 shared cores can take > 10 s.
    assert proc.returncode in (0, 2), proc.stdout + proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["healthy"] and proc.returncode == (0 if report["ok"] else 2)
    health = {h["name"].split(" ")[0]: h for h in report["health"]}
    assert {"kafka", "milvus", "triton", "worker"} <= set(health)
    assert all(h["ok"] for h in report["health"]), report["health"]
    assert "3 rows" in health["milvus"]["detail"]
    assert report["models"] == {stack.settings.triton_model: ["1"]}
    lag = {(p["topic"], p["partition"]): p for p in report["lag"]}
    interactions = [lag[(s.topic(s.interactions_topic), p)] for p in range(s.partitions)]
    assert sum(p["end"] for p in interactions) == len(traffic["events"])
    assert sum(p["lag"] for p in interactions) == 0  # all answered and committed
    # Both input topics of the group are reported (uploads too, before any commit).
    assert {topic for topic, _ in lag} >= {s.topic(s.interactions_topic), s.topic(s.uploads_topic)}
    (e2r,) = [x for x in report["latency"] if x["name"] == "event -> recommendation"]
    assert e2r["value_s"] is not None and 0 < e2r["value_s"] < 60
    assert "events ok" in report["rates"] and report["dead_letters"] == {}

    screen = _status(env, "--window", "0.2")
    assert screen.returncode in (0, 2), screen.stdout + screen.stderr[-3000:]
    assert screen.stdout.startswith("Resonate status: " + ("OK" if report["ok"] else "SLO MISSED"))
    assert "consumer lag" in screen.stdout and "p99" in screen.stdout


def test_prometheus_scrapes_the_stack_and_evaluates_the_alerts(
    stack: EmbeddedStack, traffic: dict, prometheus: PrometheusServer
) -> None:
    api = prometheus.api()
    s = stack.settings
    targets = poll(
        "all targets up",
        lambda: (t := api.targets()) and all(x["health"] == "up" for x in t) and t,
    )
    assert {t["scrapePool"] for t in targets} == {"resonate-workers", "triton"}
    # The latency histogram, as Prometheus sees it.
    count = poll(
        "event->recommendation observations",
        lambda: api.scalar("sum(resonate_event_to_recommendation_seconds_count)"),
    )
    assert count >= len(traffic["events"])
    p99 = api.scalar(
        "histogram_quantile(0.99, sum by (le) (resonate_event_to_recommendation_seconds_bucket))"
    )
    assert p99 is not None and 0 < p99 <= 60
    # The lag of every interactions partition (the collector runs every 5 s).
    lag = poll(
        "consumer lag series",
        lambda: api.query(
            f'resonate_consumer_lag_messages{{topic="{s.topic(s.interactions_topic)}"}}'
        ),
    )
    assert {x["metric"]["partition"] for x in lag} == {str(p) for p in range(s.partitions)}
    assert (
        api.scalar(
            f'sum(resonate_consumer_lag_messages{{topic="{s.topic(s.interactions_topic)}"}})'
        )
        is not None
    )
    # The production rules load and evaluate; a healthy stack fires nothing.
    rules = poll(
        "rules evaluated",
        lambda: (
            (r := api.alerting_rules())
            and all(x.get("lastEvaluation", "").startswith("20") for x in r.values())
            and r
        ),
    )
    assert all(r["health"] == "ok" for r in rules.values()), {
        n: r.get("lastError") for n, r in rules.items()
    }
    assert rules["ResonateNoRecommendations"]["state"] == "inactive"
    assert rules["ResonateWorkerDown"]["state"] == "inactive"
    # A crashed worker: Prometheus sees the target down and the alert goes pending
    # (it fires after its `for: 1m`).
    stack.stop_worker(0, kill=True)
    poll(
        "ResonateWorkerDown pending",
        lambda: api.alerting_rules()["ResonateWorkerDown"]["state"] in ("pending", "firing"),
        timeout_s=30,
    )
    (alert,) = api.alerting_rules()["ResonateWorkerDown"]["alerts"]
    assert alert["labels"]["job"] == "resonate-workers"


def test_a_stalled_partition_fires_its_alert_and_status_names_it(
    stack: EmbeddedStack, bus: Bus, traffic: dict, prometheus: PrometheusServer
) -> None:
    """One record the worker can get past in no way (its dead-letter topic refuses it and
    the spool is full) stops its partition: within two minutes Prometheus fires
    ResonatePartitionStalled, the worker is not ready, and `resonate status` names the
    partition, the offset in hand and the error retried. Room in the spool ends it."""
    from kafka import KafkaProducer
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

    s = stack.settings
    if stack.workers[0].proc is None:  # the test above crashed it
        stack.start_worker(0)
    stack.wait_workers_ready(timeout_s=180)
    api = prometheus.api()
    filler = s.run_dir / "spool" / "filler.jsonl"
    filler.parent.mkdir(parents=True, exist_ok=True)
    filler.write_bytes(b"x" * s.spool_max_bytes)
    dlq = s.dead_letter_topic(s.interactions_topic)
    admin = KafkaAdminClient(bootstrap_servers=s.kafka_bootstrap)

    def dlq_limit(value: str) -> None:
        admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, dlq, configs={"max.message.bytes": value})]
        )

    producer = KafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all")
    try:
        dlq_limit("64")
        topic = s.topic(s.interactions_topic)
        partition = producer.send(topic, key=b"stuck", value=b"not json").get(30).partition
        user = f"behind-{uuid.uuid4().hex[:6]}"
        behind = {play(bus, s, user, CLIPS[0], "play", datetime.now(UTC))}
        alert = poll(
            "ResonatePartitionStalled firing",
            lambda: next(
                (
                    a
                    for a in api.alerting_rules()["ResonatePartitionStalled"]["alerts"]
                    if a["state"] == "firing" and a["labels"]["topic"] == topic
                ),
                None,
            ),
            timeout_s=150,
        )
        assert alert["labels"]["severity"] == "critical"
        assert "resonate_worker_ready 0.0" in stack.workers[0].metrics_text()
        screen = _status({**os.environ, **settings_env(s)}, "--window", "0.2").stdout
        assert f"{topic}/{partition}: offset " in screen and "waiting on: send" in screen, screen
        assert "MessageSizeTooLargeError" in screen, screen
        # Room in the spool: the letter goes there, the partition moves, the play behind it
        # is answered and the worker is ready again.
        filler.unlink()
        answers(bus, behind, timeout_s=60)
        poll("ready again", lambda: stack.workers[0].is_ready(), timeout_s=60)
    finally:
        filler.unlink(missing_ok=True)
        dlq_limit("1048588")
        admin.close()
        producer.close(5)
