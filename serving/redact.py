"""No secret in a trace: URLs lose their user-info, query and fragment before they are written.

Platforms upload from object stores with signed URLs (``...?X-Amz-Signature=...``,
``?token=...``); a log line, a dead-letter header, ``resonate dlq`` or ``resonate status``
that quoted one whole would hand the token to whoever reads them. What stays is what a
person needs to find the object: scheme, host, port and path. The original message keeps
its bytes on the dead-letter topic, where access is the broker's to control.

In ``serving`` because the workers (streams), the API and the CLI all write traces, and
``serving`` is the lowest layer they all import.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit, urlunsplit

REDACTED = "<redacted>"

# A URL in free text: scheme://, then anything up to white space or a quote/bracket.
_URL_IN_TEXT = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]{0,15}://[^\s'\"<>`]+")


def redact_url(url: str) -> str:
    """``url`` with user-info, query and fragment replaced by a marker; the rest kept."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:  # unparsable: keep nothing after the authority's start
        return url.split("?", 1)[0].split("#", 1)[0].split("@")[-1]
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = host + (f":{port}" if port is not None else "")
    if "@" in parts.netloc:
        netloc = f"{REDACTED}@{netloc}"
    return urlunsplit(
        (
            parts.scheme,
            netloc,
            parts.path,
            REDACTED if parts.query else "",
            REDACTED if parts.fragment else "",
        )
    )


def redact_text(text: str) -> str:
    """Every URL inside ``text`` redacted (error messages, log lines, headers)."""
    if "://" not in text:
        return text
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)


def redact_record(record: logging.LogRecord) -> None:
    """Redact the URLs in one log record's message and exception text, in place."""
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a broken record is the logging module's to report
        return
    redacted = redact_text(message)
    if redacted != message:
        record.msg, record.args = redacted, None
    if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
        formatted = logging.Formatter().formatException(record.exc_info)
        if "://" in formatted:
            record.exc_text = redact_text(formatted)


_installed = False


def install_log_redaction() -> None:
    """Redact every log record of this process as it is made (idempotent).

    A record factory, not a handler filter: Faust and uvicorn install their own handlers
    after our entry point runs, and a library's own log line (aiohttp, urllib3, Faust) that
    quotes a signed URL must be redacted too.
    """
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        redact_record(record)
        return record

    logging.setLogRecordFactory(factory)
    _installed = True
