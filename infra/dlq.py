"""``resonate dlq``: list dead letters, and re-publish chosen ones after a fix.

A dead letter (``streams/deadletter.py``) holds the original key and bytes and, in its
headers, why it failed and where it came from. Re-publishing sends those bytes back to
the source topic with a ``resonate-republished-from`` header; the worker then treats them
as new input. Doing so twice is harmless: an interaction's ``event_id`` is applied once
(``streams/state.py``) and an upload is an upsert by track id.

Dead letters are not deleted (Kafka keeps them for the topic's retention), so ``list``
shows what was re-published too; choose by reason or offset. ``list`` also shows the
letters the broker refused and a worker kept in its local spool (``streams/spool.py``,
refs ``spool:N``), and marks letters cut to fit (``CUT``): ``republish`` refuses those.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
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
    ORIGINAL_BYTES,
    REASON,
    REPUBLISHED_FROM,
    TRUNCATED,
    Source,
    headers_dict,
)
from streams.spool import read_spool

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
    truncated: bool = False  # the value is a prefix of the original (resonate-truncated)
    original_bytes: int = 0  # the original's length when truncated
    spooled: bool = False  # read from the local spool, not the topic

    @property
    def ref(self) -> str:
        """``partition:offset`` on the dead-letter topic, ``spool:N`` for the N-th letter of
        the local spool (what ``--offset`` takes)."""
        return f"spool:{self.offset}" if self.spooled else f"{self.partition}:{self.offset}"

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
    truncated = h.get(TRUNCATED) == "1"
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
        truncated=truncated,
        original_bytes=int(h.get(ORIGINAL_BYTES, "0") or 0) if truncated else len(rec.value or b""),
    )


def spooled_letters(folder: Path, topic: str) -> list[Letter]:
    """The letters of ``topic`` the broker refused and the workers kept in their spool."""
    out = []
    for i, item in enumerate(read_spool(folder, topic)):
        rec = SimpleNamespace(
            partition=-1, offset=i, key=item.key, value=item.value, headers=item.headers
        )
        out.append(replace(_letter(topic, rec), spooled=True))
    return out


class CutLetters(ValueError):
    """Letters that hold only a prefix of their original: they cannot be re-published."""


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
    """Send each letter's original key and bytes back to its source topic; returns count.

    Refuses (CutLetters, nothing sent) when a chosen letter was cut to fit: its bytes are a
    prefix, and the original is only in the source topic, at the offset the letter names.
    """
    from aiokafka import AIOKafkaProducer

    cut = [lt for lt in letters if lt.truncated]
    if cut:
        where = ", ".join(f"{lt.ref} ({lt.original_bytes} bytes, at {lt.source})" for lt in cut)
        raise CutLetters(
            f"{len(cut)} chosen letters hold only a prefix of their original, which did not "
            f"fit a dead letter: {where}. Nothing was sent; leave them out (--offset/--reason), "
            "and fetch those originals from their source topic if they are wanted."
        )

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
        cut = f"CUT: prefix of {lt.original_bytes} bytes; " if lt.truncated else ""
        spool = "SPOOLED (the broker refused it); " if lt.spooled else ""
        rows.append(
            f"{lt.ref:<10} {lt.reason[:24]:<24} {lt.error[:20]:<20} {lt.attempts:>8}  "
            f"{lt.source} key={(lt.key or '')[:40]} {lt.failed_at}\n"
            f"{'':<66}{spool}{cut}{lt.detail[:100]}"
        )
    by_reason: dict[str, int] = {}
    for lt in letters:
        by_reason[lt.reason] = by_reason.get(lt.reason, 0) + 1
    rows.append("by reason: " + ", ".join(f"{r}={n}" for r, n in sorted(by_reason.items())))
    return "\n".join(rows)
