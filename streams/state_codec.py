"""The user-state table's codec: states live in the table as objects, JSON on the changelog.

Why: with a JSON table the fold validated every touched listener's state from a dict and
dumped it back to one on every batch (about a tenth of the worker). Faust's memory store
keeps whatever value is set, so the table can hold :class:`~streams.state.UserState`
objects: a read is a dict lookup, a write costs one ``model_dump_json`` (the changelog
record), and validation happens only when a changelog is read back (recovery, another
worker taking the partition over).

The changelog's bytes are the same JSON the dict table wrote, so a worker with this codec
recovers a changelog written before it. A record that no longer validates is logged,
counted by the caller's ``on_invalid`` and read as "no state" (the listener starts again):
one bad record must not stop a partition's recovery.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import faust
from faust.types import AppT
from faust.types.tuples import Message
from pydantic import BaseModel, ValidationError

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)


class ModelTableSchema(faust.Schema, Generic[M]):
    """Keys as JSON (a key reads back from the changelog as the same str); values as one
    pydantic model, kept as objects in memory."""

    def __init__(self, model: type[M], *, on_invalid: Callable[[str], None]) -> None:
        super().__init__(key_serializer="json", value_serializer="raw")
        self.model = model
        self._on_invalid = on_invalid

    def loads_value(
        self, app: AppT, message: Message, *, loads: Any = None, serializer: Any = None
    ) -> Any:
        raw = message.value
        if raw is None:  # a tombstone: the key is deleted
            return None
        try:
            return self.model.model_validate_json(raw)
        except ValidationError as exc:
            where = f"{message.topic}[{message.partition}]@{message.offset}"
            log.warning("unreadable %s record at %s: %s", self.model.__name__, where, exc)
            self._on_invalid(where)
            return None

    def dumps_value(
        self, app: AppT, value: Any, *, serializer: Any = None, headers: Any
    ) -> tuple[Any, Any]:
        payload = value.model_dump_json().encode() if isinstance(value, BaseModel) else value
        return payload, self.on_dumps_value_prepare_headers(value, headers)
