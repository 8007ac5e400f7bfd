"""The last resort of a dead letter: a local file, when the broker will not take it.

When a dead letter or a retry record cannot be written (the topic refuses writes, it does
not exist, the broker is out of reach past ``send_deadline_s``), the worker appends it here
and its source partition moves on; nothing one message does may stop everyone else's
stream. One JSON line per letter (key, value and headers base64), in
``<run_dir>/spool/<topic>.<host>-<pid>.jsonl``: one file per worker process, so concurrent
workers never interleave a line. Files are 0600 in a 0700 folder: they hold message bytes,
like the dead-letter topic. The folder is bounded (``spool_max_bytes``); a full spool makes
the send wait instead, which the stall alarm reports (docs/reliability.md).

``resonate dlq list`` shows spooled letters beside the topic's; re-publishing them is the
operator's move once the broker takes writes again.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FILE_MODE = 0o600
DIR_MODE = 0o700


@dataclass(frozen=True)
class Spooled:
    """One letter read back from the spool."""

    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    error: str
    spooled_at_ms: int
    file: str


class Spool:
    """Append-only, size-bounded local store of letters the broker refused."""

    def __init__(self, *, folder: Path, max_bytes: int) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self._used: int | None = None  # bytes in the folder, read on first use

    def used_bytes(self) -> int:
        if self._used is None:
            self._used = sum(p.stat().st_size for p in self.folder.glob("*.jsonl"))
        return self._used

    def append(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Sequence[tuple[str, bytes]],
        *,
        error: str,
    ) -> bool:
        """Write one letter; False when the spool is full (nothing written)."""
        line = _encode(topic, key, value, headers, error=error) + "\n"
        data = line.encode()
        self.folder.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        if self.used_bytes() + len(data) > self.max_bytes:
            self._used = None  # an operator may have made room since: look again
            if self.used_bytes() + len(data) > self.max_bytes:
                return False
        path = self.folder / f"{topic}.{socket.gethostname()}-{os.getpid()}.jsonl"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
        try:
            os.fchmod(fd, FILE_MODE)
            os.write(fd, data)  # one write per line: O_APPEND keeps lines whole
            os.fsync(fd)  # the source offset is committed after this returns
        finally:
            os.close(fd)
        self._used = self.used_bytes() + len(data)
        return True


def read_spool(folder: Path, topic: str | None = None) -> list[Spooled]:
    """Every spooled letter (of ``topic``, or all), oldest first per file."""
    out: list[Spooled] = []
    for path in sorted(folder.glob("*.jsonl")):
        for line in path.read_text(errors="replace").splitlines():
            try:
                item = _decode(line, path.name)
            except (ValueError, KeyError, TypeError):
                log.warning("spool %s: unreadable line skipped", path.name)
                continue
            if topic is None or item.topic == topic:
                out.append(item)
    return out


def _b64(raw: bytes | None) -> str | None:
    return None if raw is None else base64.b64encode(raw).decode()


def _encode(
    topic: str,
    key: bytes | None,
    value: bytes,
    headers: Sequence[tuple[str, bytes]],
    *,
    error: str,
) -> str:
    return json.dumps(
        {
            "topic": topic,
            "key": _b64(key),
            "value": _b64(value),
            "headers": [[k, _b64(v)] for k, v in headers],
            "error": error,
            "spooled_at_ms": int(time.time() * 1000),
        },
        separators=(",", ":"),
    )


def _decode(line: str, file: str) -> Spooled:
    d: dict[str, Any] = json.loads(line)
    return Spooled(
        topic=str(d["topic"]),
        key=None if d["key"] is None else base64.b64decode(d["key"]),
        value=base64.b64decode(d["value"]),
        headers=tuple((str(k), base64.b64decode(v or "")) for k, v in d["headers"]),
        error=str(d.get("error", "")),
        spooled_at_ms=int(d.get("spooled_at_ms", 0)),
        file=file,
    )
