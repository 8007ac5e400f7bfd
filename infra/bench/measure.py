"""What a benchmark step costs: CPU of every process (with its children) and broker
records written, read before and after the step."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import psutil

from serving.kafka_reader import partitions_of
from serving.kafka_security import PLAINTEXT, KafkaSecurity


def _tree_cpu_s(pid: int, *, children: bool = True) -> float:
    """User + system CPU seconds of a process and its live children (Triton's server)."""
    try:
        p = psutil.Process(pid)
        procs = [p, *(p.children(recursive=True) if children else [])]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for q in procs:
        try:
            t = q.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            continue
    return total


@dataclass
class CpuSample:
    """CPU seconds per named process at one moment."""

    at: float
    cpu_s: dict[str, float]


def cpu_sample(pids: Mapping[str, int]) -> CpuSample:
    """Sample every named process tree, and this benchmark process itself."""
    cpu = {name: _tree_cpu_s(pid) for name, pid in pids.items()}
    # The stack's processes are the benchmark's children: count its own CPU only.
    cpu["bench"] = _tree_cpu_s(os.getpid(), children=False)
    return CpuSample(at=time.monotonic(), cpu_s=cpu)


def cpu_between(a: CpuSample, b: CpuSample, events: int) -> dict[str, dict[str, float]]:
    """Per process: CPU % of one core and CPU-ms per event between two samples."""
    secs = max(1e-9, b.at - a.at)
    out: dict[str, dict[str, float]] = {}
    for name, end in b.cpu_s.items():
        used = end - a.cpu_s.get(name, 0.0)
        out[name] = {
            "cpu_pct": round(100 * used / secs, 1),
            "cpu_ms_per_event": round(1000 * used / max(1, events), 3),
        }
    return out


async def broker_records(
    bootstrap: str, prefix: str, *, security: KafkaSecurity = PLAINTEXT
) -> dict[str, int]:
    """Records written so far to every topic whose name starts with ``prefix``."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, **security.aiokafka())
    await consumer.start()
    try:
        topics = [t for t in await consumer.topics() if t.startswith(prefix)]
        found = await partitions_of(consumer, topics)
        tps = [TopicPartition(t, p) for t, parts in found.items() for p in parts]
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    out: dict[str, int] = {}
    for tp, end in ends.items():
        out[tp.topic] = out.get(tp.topic, 0) + end
    return out


def records_between(a: Mapping[str, int], b: Mapping[str, int], events: int) -> dict[str, Any]:
    """Records written per topic between two counts, and per interaction."""
    per_topic = {t: b[t] - a.get(t, 0) for t in b if b[t] - a.get(t, 0) > 0}
    total = sum(per_topic.values())
    return {
        "per_topic": per_topic,
        "total": total,
        "per_interaction": round(total / max(1, events), 3),
    }


def batch_steps(texts: list[str]) -> dict[str, tuple[float, float]]:
    """(sum of seconds, count) per step of ``resonate_batch_step_seconds``, over the
    workers' /metrics texts."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, tuple[float, float]] = {}
    for text in texts:
        for fam in text_string_to_metric_families(text):
            if fam.name != "resonate_batch_step_seconds":
                continue
            for smp in fam.samples:
                step = smp.labels.get("step", "")
                total, count = out.get(step, (0.0, 0.0))
                if smp.name.endswith("_sum"):
                    out[step] = (total + smp.value, count)
                elif smp.name.endswith("_count"):
                    out[step] = (total, count + smp.value)
    return out


def counter_total(texts: list[str], name: str) -> float:
    """The sum of every sample of counter ``name`` (without ``_total``) over the workers'
    /metrics texts (e.g. ``resonate_gc_seconds``: all generations, all workers)."""
    from prometheus_client.parser import text_string_to_metric_families

    return sum(
        smp.value
        for text in texts
        for fam in text_string_to_metric_families(text)
        if fam.name == name
        for smp in fam.samples
        if smp.name == f"{name}_total"
    )


def batch_steps_between(
    a: dict[str, tuple[float, float]], b: dict[str, tuple[float, float]]
) -> dict[str, dict[str, float]]:
    """Mean wall ms per batch of each step, and batches, between two readings."""
    out: dict[str, dict[str, float]] = {}
    for step, (total, count) in b.items():
        t0, c0 = a.get(step, (0.0, 0.0))
        n = count - c0
        if n > 0:
            out[step] = {"batches": n, "mean_ms": round(1000 * (total - t0) / n, 1)}
    return out
