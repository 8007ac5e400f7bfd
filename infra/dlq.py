"""``resonate dlq``: list dead letters, and re-publish chosen ones after a fix.

A dead letter (``streams/deadletter.py``) holds the original key and bytes and, in its
headers, why it failed and where it came from. Re-publishing sends those bytes back to
the source topic with a ``resonate-republished-from`` header; the worker then treats them
as new input. Doing so twice is harmless: an interaction's ``event_id`` is applied once
(``streams/state.py``) and an upload is an upsert by track id.

Dead letters are not deleted (Kafka keeps them for the topic's retention; Tansu cannot
delete records), so ``list`` shows what was re-published too; choose by reason or offset.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from schemas.settings import Settings
from serving.kafka_reader import read_to_end
from serving.kafka_security import PLAINTEXT, KafkaSecurity
from serving.redact import redact_text
from streams.deadletter import (
    ATTEMPTS,
    DETAIL,
    ERROR,
    FAILED_AT,
    REASON,
    REPUBLISHED_FROM,
    Source,
    headers_dict,
)

ROLES = ("interactions", "track-uploads")


@dataclass(frozen=True)
class Letter:
    """One dead letter as read back from its topic."""

    dlq_topic: str
    partition: int
    offset: int
    key: str | None
    value: bytes
    reason: str
    error: str
    detail: str
    source: str  # "<topic>[<partition>]@<offset>"
    source_topic: str
    attempts: int
    failed_at: str
    headers: tuple[tuple[str, bytes], ...]

    @property
    def ref(self) -> str:
        """``partition:offset`` on the dead-letter topic (what ``--offset`` takes)."""
        return f"{self.partition}:{self.offset}"

    def summary(self) -> dict[str, Any]:
        out = asdict(self)
        # Redacted whole, then cut: an upload's signed audio URL shows no token even in part.
        out["value"] = redact_text(self.value.decode("utf-8", "replace"))[:120]
        out["bytes"] = len(self.value)
        out.pop("headers")
        return out


def dlq_topic(settings: Settings, role: str) -> str:
    """The dead-letter topic of a role ("interactions" or "track-uploads")."""
    names = {"interactions": settings.interactions_topic, "track-uploads": settings.uploads_topic}
    if role not in names:
        raise ValueError(f"unknown topic {role!r}; one of {', '.join(ROLES)}")
    return settings.dead_letter_topic(names[role])


def _letter(topic: str, rec: Any) -> Letter:
    headers = tuple((k, bytes(v)) for k, v in (rec.headers or ()))
    src = Source(
        topic=topic, partition=rec.partition, offset=rec.offset, key=rec.key,
        value=rec.value or b"", headers=headers,
    )  # fmt: skip
    h = headers_dict(headers)
    origin = src.origin
    at = h.get(FAILED_AT, "")
    return Letter(
        dlq_topic=topic,
        partition=rec.partition,
        offset=rec.offset,
        key=rec.key.decode("utf-8", "replace") if rec.key is not None else None,
        value=rec.value or b"",
        reason=h.get(REASON, "?"),
        error=h.get(ERROR, "?"),
        detail=redact_text(h.get(DETAIL, "")),  # letters written before redaction too
        source=f"{origin[0]}[{origin[1]}]@{origin[2]}",
        source_topic=origin[0],
        attempts=int(h.get(ATTEMPTS, "0") or 0),
        failed_at=(
            datetime.fromtimestamp(int(at) / 1000, UTC).isoformat(timespec="seconds")
            if at.isdigit()
            else ""
        ),
        headers=headers,
    )


async def read_letters(
    bootstrap: str, topic: str, *, timeout_s: float = 10.0, security: KafkaSecurity = PLAINTEXT
) -> list[Letter]:
    """Every dead letter on ``topic``, oldest first per partition."""
    records = await read_to_end(bootstrap, topic, timeout_s=timeout_s, security=security)
    return [_letter(topic, r) for r in records]


def choose(
    letters: Sequence[Letter],
    *,
    refs: Iterable[str] = (),
    reason: str | None = None,
    everything: bool = False,
) -> list[Letter]:
    """The letters picked by ``partition:offset`` refs, by reason, or all of them."""
    wanted = set(refs)
    return [
        lt
        for lt in letters
        if everything or lt.ref in wanted or (reason is not None and lt.reason == reason)
    ]


async def republish(
    bootstrap: str, letters: Sequence[Letter], *, security: KafkaSecurity = PLAINTEXT
) -> int:
    """Send each letter's original key and bytes back to its source topic; returns count."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", **security.aiokafka())
    await producer.start()
    try:
        futures = []
        for lt in letters:
            own = [(k, v) for k, v in lt.headers if not k.startswith("resonate-")]
            mark = (REPUBLISHED_FROM, f"{lt.dlq_topic}:{lt.ref}".encode())
            futures.append(
                await producer.send(
                    lt.source_topic,
                    key=lt.key.encode() if lt.key is not None else None,
                    value=lt.value,
                    headers=[*own, mark],
                )
            )
        await asyncio.gather(*futures)
        return len(futures)
    finally:
        await producer.stop()


def render(letters: Sequence[Letter], *, as_json: bool) -> str:
    """A table (or JSON lines) of dead letters, for the terminal."""
    if as_json:
        return "\n".join(json.dumps(lt.summary()) for lt in letters)
    if not letters:
        return "no dead letters"
    rows = [f"{'ref':<10} {'reason':<24} {'error':<20} {'attempts':>8}  source / detail"]
    for lt in letters:
        rows.append(
            f"{lt.ref:<10} {lt.reason[:24]:<24} {lt.error[:20]:<20} {lt.attempts:>8}  "
            f"{lt.source} key={lt.key} {lt.failed_at}\n{'':<66}{lt.detail[:100]}"
        )
    by_reason: dict[str, int] = {}
    for lt in letters:
        by_reason[lt.reason] = by_reason.get(lt.reason, 0) + 1
    rows.append("by reason: " + ", ".join(f"{r}={n}" for r, n in sorted(by_reason.items())))
    return "\n".join(rows)
