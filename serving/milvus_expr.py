"""String literals in Milvus boolean expressions that Milvus Lite 2.5 and the Milvus 2.3
server both read back as exactly the same string.

Neither backend binds expression parameters in a way both support (``expr_params`` is
Milvus >= 2.5 only), so values are quoted. What each parser accepts was measured
(tests/integration/test_broker_and_store.py, ``HOSTILE_IDS``):

* A double-quoted literal with only ``\\`` and ``"`` backslash-escaped and every other
  character as it is matches exactly on both: quotes, backslashes, ``'``, non-ASCII and
  astral characters included.
* ``json.dumps`` (what was used before) does not: Lite does not decode ``\\uXXXX``, so a
  non-ASCII id never matched there, and the server rejects JSON's surrogate pairs.
* Track ids go in as their stored keys (``schemas.limits.track_key``: Lite cannot upsert
  or delete a key holding ``'``), through :func:`track_ids_in` / :func:`track_ids_not_in`.
* A raw line feed or carriage return is a parse error on both, and no escape of them
  (``\\n``, ``\\u000a``) matches on Lite. Control characters are therefore not
  representable: the event contract refuses them in stored ids and labels
  (``schemas.events``), the store refuses to write them, and the helpers here leave them
  out of exclusion lists (no stored row can hold them) or make an equality match nothing.

pymilvus' own ``ids=`` arguments (``get``, ``delete``) quote with Python's ``repr``, which
breaks on a backslash or ``' or '`` on Lite, so the store never uses them.
"""

from __future__ import annotations

from collections.abc import Iterable

from schemas.limits import has_control_chars, track_key

# Matches no row: track_id is a non-empty primary key.
NOTHING = 'track_id == ""'


def representable(value: str) -> bool:
    """Whether ``value`` can be written as a literal both backends read back exactly."""
    return not has_control_chars(value)


def quote(value: str) -> str:
    """``value`` as a double-quoted Milvus string literal; ValueError if not representable."""
    if not representable(value):
        raise ValueError(f"{value[:64]!r} holds a control character; Milvus cannot match it")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def literal_list(values: Iterable[str]) -> str:
    """``["a","b"]`` of the representable ``values`` (the others are left out)."""
    return "[" + ",".join(quote(v) for v in values if representable(v)) + "]"


def field_in(field: str, values: Iterable[str]) -> str:
    """``field in [...]``; :data:`NOTHING` when no value is representable."""
    kept = [v for v in values if representable(v)]
    return f"{field} in {literal_list(kept)}" if kept else NOTHING


def field_not_in(field: str, values: Iterable[str]) -> str:
    """``field not in [...]``, or "" (no condition) when no value is representable, since
    no stored row holds an unrepresentable value."""
    kept = [v for v in values if representable(v)]
    return f"{field} not in {literal_list(kept)}" if kept else ""


def field_eq(field: str, value: str) -> str:
    """``field == "value"``; :data:`NOTHING` when ``value`` cannot be stored anyway."""
    return f"{field} == {quote(value)}" if representable(value) else NOTHING


def field_cmp(field: str, op: str, value: str) -> str:
    """``field <op> "value"`` for an ordering comparison (dates as ISO strings)."""
    if op not in ("<", "<=", ">", ">="):  # "!=" would need the opposite fallback
        raise ValueError(f"unsupported comparison {op!r}")
    return f"{field} {op} {quote(value)}" if representable(value) else NOTHING


def track_ids_in(track_ids: Iterable[str]) -> str:
    """``track_id in [...]`` of these track ids' stored keys."""
    return field_in("track_id", (track_key(t) for t in track_ids))


def track_ids_not_in(track_ids: Iterable[str]) -> str:
    """``track_id not in [...]`` of these track ids' stored keys ("" = no condition)."""
    return field_not_in("track_id", (track_key(t) for t in track_ids))
