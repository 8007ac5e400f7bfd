"""Plugs the frozen pydantic event models into Faust (which has no pydantic support).

A topic declared with :class:`PydanticSchema` yields validated models; a message
that is not valid JSON or breaks the contract yields an :class:`InvalidEvent`
instead of raising, so one bad producer never crashes an agent: the agent logs
and counts it and moves on. A record over the declared size (key + value + headers,
``max_event_bytes``) is an InvalidEvent with the reason ``too-large`` and is never parsed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import faust
from faust.types import AppT
from faust.types.tuples import Message
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class InvalidEvent:
    """A message that did not validate: raw bytes plus the first error."""

    raw: bytes
    error: str
    reason: str = "invalid"  # the dead letter's reason: "invalid" or "too-large"


def record_bytes(message: Message) -> int:
    """Size of a record as its producer sent it: key, value and every header."""
    size = len(message.value or b"") + len(message.key or b"")
    headers: Any = message.headers or ()
    for name, value in headers.items() if isinstance(headers, dict) else headers:
        size += len(name) + len(value or b"")
    return size


class PydanticSchema(faust.Schema, Generic[M]):
    """faust.Schema whose values are JSON-encoded instances of one pydantic model.

    Keys stay raw UTF-8 bytes, exactly what a plain Kafka producer sends, so
    Kafka's default partitioner puts a key on the same partition whoever wrote it.
    """

    def __init__(self, model: type[M], *, max_bytes: int) -> None:
        super().__init__(key_serializer="raw", value_serializer="raw")
        self.model = model
        self.max_bytes = max_bytes

    def loads_value(
        self,
        app: AppT,
        message: Message,
        *,
        loads: Any = None,
        serializer: Any = None,
    ) -> Any:
        size = record_bytes(message)
        if size > self.max_bytes:
            # Not parsed, not copied: the dead letter keeps a bounded prefix (deadletter.py).
            error = f"record of {size} bytes is over the {self.max_bytes} byte limit"
            return InvalidEvent(raw=b"", error=error, reason="too-large")
        raw = message.value or b""
        try:
            return self.model.model_validate_json(raw)
        except ValidationError as exc:
            errors = exc.errors()
            if not errors:
                return InvalidEvent(raw=bytes(raw), error=str(exc))
            where = ".".join(str(p) for p in errors[0]["loc"]) or "message"
            return InvalidEvent(raw=bytes(raw), error=f"{where}: {errors[0]['msg']}")

    def dumps_value(
        self,
        app: AppT,
        value: Any,
        *,
        serializer: Any = None,
        headers: Any,
    ) -> tuple[Any, Any]:
        payload = value.model_dump_json().encode() if isinstance(value, BaseModel) else value
        return payload, self.on_dumps_value_prepare_headers(value, headers)


def encode(model: BaseModel) -> bytes:
    """The wire form of an event (what producers and the demo send)."""
    return model.model_dump_json().encode()
