"""Dead letters and retries: where a message goes when it cannot be processed now.

Every message that enters a worker leaves exactly one trace: it is applied, counted as a
duplicate, or set aside on ``<topic>.dlq`` with the ORIGINAL key and bytes and headers
that say why (``resonate-reason``, ``resonate-error``, ``resonate-source-*``,
``resonate-attempts``, ``resonate-failed-at``). ``resonate dlq`` lists them and
re-publishes chosen ones onto their source topic after a fix.

Uploads that failed for a reason that may pass (the audio host is down, Triton or Milvus
rejected this one item) go to ``<uploads>.retry`` instead, with ``resonate-not-before``:
the retry agent processes them once due, and after ``upload_max_attempts`` they are dead-
lettered. Outages of Triton or Milvus themselves are NOT sent there: every upload would
fail the same way, so the upload agent waits in place (``streams/ingest.py``) and the
broker keeps the queue (see docs/reliability.md).

A dead letter can always be written, and no send here waits forever (docs/reliability.md,
"Every send and its bound"):

- its size is bounded: an original that does not fit ``max_record_bytes`` (the producer's
  request size, lowered at start to the smallest ``max.message.bytes`` of the topics we
  write) travels as a prefix with its full length, SHA-256 and source coordinates
  (``resonate-truncated``); the original stays in its source topic until retention, and
  ``resonate dlq republish`` refuses a cut letter;
- sends are awaited until the broker acknowledged them, retried until
  ``send_deadline_s``; a failure that waiting cannot cure (too large, not authorised, no
  such topic) is classified at once. Either way the letter then goes to the local spool
  (``streams/spool.py``: bounded, 0600, counted, listed by ``resonate dlq``), so the source
  partition moves on. The source offset is committed only after the agent's batch returns,
  so a letter is never lost behind a committed offset: it is on the topic or in the spool.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import faust
from pydantic import BaseModel

from schemas.settings import Settings
from serving.redact import redact_text
from streams.metrics import Metrics
from streams.spool import Spool

log = logging.getLogger(__name__)

PREFIX = "resonate-"
REASON = PREFIX + "reason"
ERROR = PREFIX + "error"
DETAIL = PREFIX + "detail"
SOURCE_TOPIC = PREFIX + "source-topic"
SOURCE_PARTITION = PREFIX + "source-partition"
SOURCE_OFFSET = PREFIX + "source-offset"
ATTEMPTS = PREFIX + "attempts"
FAILED_AT = PREFIX + "failed-at"  # unix ms
NOT_BEFORE = PREFIX + "not-before"  # unix ms; retry topic only
REPUBLISHED_FROM = PREFIX + "republished-from"  # "<dlq topic>:<partition>:<offset>"
TRUNCATED = PREFIX + "truncated"  # "1": the value is a prefix of the original
ORIGINAL_BYTES = PREFIX + "original-bytes"
ORIGINAL_SHA256 = PREFIX + "original-sha256"
ORIGINAL_KEY_BYTES = PREFIX + "original-key-bytes"  # the key was cut too
HEADERS_DROPPED = PREFIX + "headers-dropped"  # the producer's own headers left out

#: Bytes of an oversized original kept in its dead letter, and of an oversized key.
PREFIX_BYTES = 4096
KEY_PREFIX_BYTES = 256
#: Room kept for our headers and the record's framing inside ``max_record_bytes``.
LETTER_OVERHEAD = 16 * 1024

_SOURCE = (SOURCE_TOPIC, SOURCE_PARTITION, SOURCE_OFFSET)
_DETAIL_MAX = 500  # bytes of an error message kept in a header


@dataclass(frozen=True)
class Source:
    """Where a message came from, byte for byte, so it can be set aside and replayed."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()

    @classmethod
    def of(cls, event: Any) -> Source:
        """The source of a Faust ``Event`` (its raw message, before decoding)."""
        msg = event.message
        return cls(
            topic=msg.topic,
            partition=msg.partition,
            offset=msg.offset,
            key=None if msg.key is None else _bytes(msg.key),
            value=_bytes(msg.value or b""),
            headers=tuple((k, bytes(v)) for k, v in (msg.headers or ())),
        )

    def header(self, name: str) -> str | None:
        """A header's value as text (the last one wins), or None."""
        found = [v for k, v in self.headers if k == name]
        return found[-1].decode("utf-8", "replace") if found else None

    @property
    def attempts(self) -> int:
        """Processing attempts so far (0 for a message that never failed)."""
        raw = self.header(ATTEMPTS)
        return int(raw) if raw and raw.isdigit() else 0

    @property
    def origin(self) -> tuple[str, int, int]:
        """Topic, partition and offset where the message first entered (through retries)."""
        t, p, o = (self.header(h) for h in _SOURCE)
        if t and p and o and p.isdigit() and o.lstrip("-").isdigit():
            return t, int(p), int(o)
        return self.topic, self.partition, self.offset

    @property
    def not_before_ms(self) -> int:
        """When a retried message is due (unix ms; 0 = now)."""
        raw = self.header(NOT_BEFORE)
        return int(raw) if raw and raw.isdigit() else 0


def _bytes(raw: Any) -> bytes:
    # From a broker these are bytes already; Faust's test context hands over the objects.
    if isinstance(raw, bytes | bytearray | memoryview):
        return bytes(raw)
    if isinstance(raw, BaseModel):
        return raw.model_dump_json().encode()
    return str(raw).encode()


def failure_headers(
    source: Source,
    *,
    reason: str,
    error: str,
    detail: str,
    attempts: int,
    now_ms: int,
    not_before_ms: int | None = None,
) -> list[tuple[str, bytes]]:
    """The source's own headers (ours replaced) plus why and where it failed."""
    topic, partition, offset = source.origin
    own = [(k, v) for k, v in source.headers if not k.startswith(PREFIX)]
    ours = {
        REASON: reason,
        ERROR: error,
        # Redacted before it is cut: a signed URL's token must not survive in the prefix.
        DETAIL: redact_text(detail)
        .encode("utf-8", "replace")[:_DETAIL_MAX]
        .decode("utf-8", "ignore"),
        SOURCE_TOPIC: topic,
        SOURCE_PARTITION: str(partition),
        SOURCE_OFFSET: str(offset),
        ATTEMPTS: str(attempts),
        FAILED_AT: str(now_ms),
    }
    if not_before_ms is not None:
        ours[NOT_BEFORE] = str(not_before_ms)
    return own + [(k, v.encode()) for k, v in ours.items()]


def backoff_s(attempts: int, *, base_s: float, cap_s: float) -> float:
    """Delay before attempt ``attempts + 1``: doubling from ``base_s``, at most ``cap_s``."""
    return float(min(cap_s, base_s * 2 ** max(0, attempts - 1)))


def headers_dict(headers: Sequence[tuple[str, bytes]] | Mapping[str, bytes]) -> dict[str, str]:
    """Headers as text (the last value of a repeated header wins)."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    return {k: bytes(v).decode("utf-8", "replace") for k, v in items}


def letter_bytes(key: bytes | None, value: bytes, headers: Sequence[tuple[str, bytes]]) -> int:
    """Size of a record as the broker counts it, near enough: key, value, headers."""
    return len(key or b"") + len(value) + sum(len(k) + len(v) for k, v in headers)


def fit_letter(
    key: bytes | None, value: bytes, headers: list[tuple[str, bytes]], *, max_bytes: int
) -> tuple[bytes | None, bytes, list[tuple[str, bytes]]]:
    """The letter as is when it fits ``max_bytes`` (minus room for framing), else a
    bounded prefix of the value and key, our headers only, and what was cut, described."""
    if letter_bytes(key, value, headers) <= max_bytes - LETTER_OVERHEAD:
        return key, value, headers
    ours = [(k, v) for k, v in headers if k.startswith(PREFIX)]
    dropped = len(headers) - len(ours)
    extra = [
        (TRUNCATED, b"1"),
        (ORIGINAL_BYTES, str(len(value)).encode()),
        (ORIGINAL_SHA256, hashlib.sha256(value).hexdigest().encode()),
    ]
    if key is not None and len(key) > KEY_PREFIX_BYTES:
        extra.append((ORIGINAL_KEY_BYTES, str(len(key)).encode()))
        key = key[:KEY_PREFIX_BYTES]
    if dropped:
        extra.append((HEADERS_DROPPED, str(dropped).encode()))
    return key, value[:PREFIX_BYTES], ours + extra


class InvalidMessage(ValueError):
    """A message that is not valid JSON or breaks the event contract."""


class OutOfWindow(ValueError):
    """An event whose time is implausible or too late to apply (see streams/state.py)."""


@dataclass(frozen=True)
class Failed:
    """One message given up on, and why."""

    source: Source
    reason: str  # short, stable, counted: "invalid", "audio-missing", "event-time-too-old"...
    error: BaseException
    attempts: int = 1

    @property
    def error_class(self) -> str:
        return type(self.error).__name__


_Letter = tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]


class DeadLetters:
    """Sends messages to their dead-letter or retry topic, counted, until acknowledged."""

    def __init__(
        self, *, app: faust.App, settings: Settings, metrics: Metrics, spool: Spool
    ) -> None:
        self._app = app
        self._s = settings
        self._m = metrics
        self._spool = spool
        self._topics: dict[str, faust.TopicT] = {}

    def topic(self, name: str) -> faust.TopicT:
        """The raw-bytes Faust topic ``name`` (created on first use, same partitions)."""
        if name not in self._topics:
            self._topics[name] = self._app.topic(
                name,
                key_type=bytes,
                value_type=bytes,
                key_serializer="raw",
                value_serializer="raw",
                partitions=self._s.partitions,
            )
        return self._topics[name]

    async def declare(self, names: Sequence[str]) -> None:
        """Create the topics this worker produces to (Faust declares only what it consumes)."""
        for name in names:
            await self.topic(name).maybe_declare()

    async def dead_letter_many(self, failed: Sequence[Failed], *, role: str) -> None:
        """Set several messages aside at once (one wait for the broker, not one each)."""
        now_ms = int(time.time() * 1000)
        letters = []
        for f in failed:
            headers = failure_headers(
                f.source,
                reason=f.reason,
                error=f.error_class,
                detail=str(f.error),
                attempts=f.attempts,
                now_ms=now_ms,
            )
            dlq = self._s.dead_letter_of(f.source.origin[0])
            letters.append((dlq, f.source.key, f.source.value, headers))
        await self._deliver(letters)
        for f in failed:
            self._m.dead_letters.labels(topic=role, reason=f.reason).inc()
            # The error, never the content: payloads may carry personal data (the dead-
            # letter topic keeps the bytes, under the broker's access control).
            log.warning(
                "dead-lettered %s[%d]@%d (%s, %d bytes, attempt %d): %s: %s",
                *f.source.origin,
                f.reason,
                len(f.source.value),
                f.attempts,
                f.error_class,
                redact_text(str(f.error))[:200],
            )

    async def retry_later(
        self, source: Source, *, role: str, reason: str, error: BaseException, attempts: int
    ) -> None:
        """Send ``source`` to the retry topic, due after the backoff for ``attempts``."""
        s = self._s
        now_ms = int(time.time() * 1000)
        delay = backoff_s(attempts, base_s=s.retry_backoff_s, cap_s=s.retry_backoff_max_s)
        headers = failure_headers(
            source,
            reason=reason,
            error=type(error).__name__,
            detail=str(error),
            attempts=attempts,
            now_ms=now_ms,
            not_before_ms=now_ms + int(delay * 1000),
        )
        name = s.retry_topic(s.uploads_topic)
        await self._deliver([(name, source.key, source.value, headers)])
        self._m.retries.labels(topic=role, reason=reason).inc()
        log.info("retrying %s[%d]@%d in %.1f s (%s)", *source.origin, delay, reason)

    async def _deliver(self, letters: Sequence[_Letter]) -> None:
        """Every letter acknowledged by the broker or, past the deadline or on a failure
        waiting cannot cure, in the spool; only a full spool makes this wait longer."""
        s, waiting = self._s, self._m.waiting.labels(on="send")
        fitted = [(n, *fit_letter(k, v, h, max_bytes=s.max_record_bytes)) for n, k, v, h in letters]
        for (name, _, value, _), orig in zip(fitted, letters, strict=True):
            if len(value) < len(orig[2]):
                self._m.letters_cut.labels(topic=name).inc()
        deadline = time.monotonic() + s.send_deadline_s
        pending, delay = list(fitted), 0.5
        try:
            while pending:
                errors = await self._send_all(pending, deadline)
                failed = [(lt, e) for lt, e in zip(pending, errors, strict=True) if e is not None]
                if not failed:
                    return
                waiting.set(1)
                for (name, *_), exc in failed:
                    self._m.send_errors.labels(topic=name, error=type(exc).__name__).inc()
                overdue = time.monotonic() >= deadline
                give_up = [(lt, e) for lt, e in failed if overdue or permanent(e)]
                kept = self._to_spool(give_up)
                pending = [lt for lt, _ in failed if not any(lt is k for k in kept)]
                if pending:
                    log.warning(
                        "%d dead letters or retries not sent (%s); again in %.1f s",
                        len(pending),
                        type(failed[0][1]).__name__,
                        delay,
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 10.0)
        finally:
            waiting.set(0)

    async def _send_all(
        self, letters: Sequence[_Letter], deadline: float
    ) -> list[BaseException | None]:
        """Send each letter; its error (None = acknowledged) by the deadline."""
        futures: list[Any] = []
        for name, key, value, headers in letters:
            try:
                futures.append(await self.topic(name).send(key=key, value=value, headers=headers))
            except Exception as exc:  # noqa: BLE001 - e.g. too large, refused before sending
                futures.append(exc)
        out: list[BaseException | None] = []
        for fut in futures:
            if isinstance(fut, BaseException):
                out.append(fut)
                continue
            try:
                left = max(0.1, deadline - time.monotonic())
                await asyncio.wait_for(asyncio.shield(fut), left)
                out.append(None)
            except Exception as exc:  # noqa: BLE001 - classified by the caller
                out.append(exc)
        return out

    def _to_spool(self, failed: Sequence[tuple[_Letter, BaseException]]) -> list[_Letter]:
        """Spool what the broker would not take; the letters written (all, unless full)."""
        kept: list[_Letter] = []
        for letter, exc in failed:
            name, key, value, headers = letter
            error = f"{type(exc).__name__}: {redact_text(str(exc))[:200]}"
            if not self._spool.append(name, key, value, headers, error=error):
                log.error(
                    "spool full (%d bytes): %s waits for the broker", self._spool.max_bytes, name
                )
                continue
            kept.append(letter)
            self._m.spooled.labels(topic=name, error=type(exc).__name__).inc()
            log.error("%s refused a letter (%s); spooled in %s", name, error, self._spool.folder)
        return kept


#: Failures that waiting cannot cure: spool at once.
PERMANENT = {
    "MessageSizeTooLargeError",
    "RecordTooLargeError",
    "RecordBatchTooLargeError",
    "TopicAuthorizationFailedError",
    "ClusterAuthorizationFailedError",
    "TransactionalIdAuthorizationFailedError",
    "InvalidTopicError",
    "InvalidRecordError",
    "UnsupportedVersionError",
    "UnsupportedForMessageFormatError",
}


def permanent(exc: BaseException) -> bool:
    """True for a send failure that no retry can cure (classified by class name, so both
    aiokafka's and kafka-python's error classes count)."""
    return type(exc).__name__ in PERMANENT
