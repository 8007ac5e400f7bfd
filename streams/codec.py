"""Plugs the frozen pydantic event models into Faust (which has no pydantic support).

A topic declared with :class:`PydanticSchema` yields validated models; a message
that is not valid JSON or breaks the contract yields an :class:`InvalidEvent`
instead of raising, so one bad producer never crashes an agent: the agent logs
and counts it and moves on.
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


class PydanticSchema(faust.Schema, Generic[M]):
    """faust.Schema whose values are JSON-encoded instances of one pydantic model.

    Keys stay raw UTF-8 bytes, exactly what a plain Kafka producer sends, so
    Kafka's default partitioner puts a key on the same partition whoever wrote it.
    """

    def __init__(self, model: type[M]) -> None:
        super().__init__(key_serializer="raw", value_serializer="raw")
        self.model = model

    def loads_value(
        self,
        app: AppT,
        message: Message,
        *,
        loads: Any = None,
        serializer: Any = None,
    ) -> Any:
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
