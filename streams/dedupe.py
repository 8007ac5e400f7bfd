"""Replay detection by event id, in bounded memory, whatever the listener sent since.

The old rule (offset, or the id among the last L events) let a replay older than the
listener's last 50 events be applied again. Here each listener keeps a **floor** (a time)
and the ids of the events applied at or after it:

* an event whose id is remembered is a *duplicate* (dropped, counted);
* an event older than the floor is *late* (rejected and dead-lettered: kept, not guessed);
* any other event is applied and its id remembered.

The floor only rises, to ``min(newest event, now) - dedupe_horizon`` after each applied
event, and further when more than ``dedupe_max_ids`` ids are remembered: then the oldest
are forgotten and the floor moves just above them.

Invariant (I): every applied event whose time is at or after the floor has its id
remembered. It holds initially (nothing applied); applying an event remembers its id; an
id is forgotten only when its stored time is below the new floor, and stored times are the
event times rounded *up* to a second, so the forgotten event's own time is below the floor
too. Hence an applied event sent again is either remembered (duplicate) or older than the
floor (late): **it is never applied twice**, however many events came in between. The
limits: a different id hashing to the same 64 bits is taken for a duplicate (chance
``dedupe_max_ids / 2**64`` per event), and an id re-sent with a *changed* time is a
different claim (caught while the id is remembered, late if the new time is below the
floor, otherwise applied).

Memory: at most ``dedupe_max_ids`` pairs of (8-byte id hash, 4-byte time), 3 KB raw,
4 KB as base64 at the default 256. Times are uint32 seconds: a time before 1970 is stored
as 1970 (rounding up, safe) and one after 2106 as 2106 (rounding down, but such an event
cannot pass the event-time window before 2106).

The cost of the bound: a listener's event that arrives more than ``dedupe_horizon`` after a
newer one, or after ``dedupe_max_ids`` newer ones, is late. Those are stragglers of a
broken producer, and they are dead-lettered, not lost silently.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import struct
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from streams.sanity import InputLimits, Verdict

_U32_MAX = (1 << 32) - 1


@functools.lru_cache(maxsize=1 << 16)
def id_hash(event_id: str) -> int:
    """64-bit hash of an event id (what is remembered instead of the id)."""
    return int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=8).digest(), "little")


def _stored_s(at_ms: int) -> int:
    """A time as remembered: whole seconds rounded up (see the module docstring)."""
    return min(_U32_MAX, max(0, -(-at_ms // 1000)))


def _pack(entries: list[tuple[int, int]]) -> str:
    n = len(entries)
    if not n:
        return ""
    secs = [s for s, _ in entries]
    hashes = [h for _, h in entries]
    return base64.b64encode(struct.pack(f"<{n}Q{n}I", *hashes, *secs)).decode()


class EventIds(BaseModel):
    """A listener's replay floor and the ids applied at or after it (bounded)."""

    model_config = ConfigDict(frozen=True)

    packed: str = Field(
        default="",
        description="base64 of n uint64 id hashes then n uint32 seconds, little-endian, "
        "oldest first.",
    )
    floor_ms: int | None = Field(
        default=None, description="Events older than this (unix ms) are late; None = no floor."
    )

    @functools.cached_property
    def _entries(self) -> list[tuple[int, int]]:
        """(stored seconds, id hash) pairs, oldest first (decoded once per instance)."""
        raw = base64.b64decode(self.packed)
        n = len(raw) // 12
        vals = struct.unpack(f"<{n}Q{n}I", raw)
        return list(zip(vals[n:], vals[:n], strict=True))

    @functools.cached_property
    def _hashes(self) -> frozenset[int]:
        return frozenset(h for _, h in self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def verdict(self, event_id: str, at_ms: int) -> Verdict | None:
        """DUPLICATE for a remembered id, LATE for a time below the floor, else None."""
        if id_hash(event_id) in self._hashes:
            return Verdict.DUPLICATE
        if self.floor_ms is not None and at_ms < self.floor_ms:
            return Verdict.LATE
        return None

    def remember(
        self, event_id: str, at_ms: int, *, newest_ms: int, now_ms: int, limits: InputLimits
    ) -> EventIds:
        """The ids after applying this event; ``newest_ms`` is the listener's newest event
        time including this one. Raises the floor and forgets what falls below it."""
        entries = sorted([*self._entries, (_stored_s(at_ms), id_hash(event_id))])
        # min(.., now): an event from a clock a day ahead must not push the floor past
        # events that happened before it.
        floor = min(newest_ms, now_ms) - limits.dedupe_horizon_ms
        if self.floor_ms is not None:
            floor = max(floor, self.floor_ms)
        excess = len(entries) - limits.dedupe_max_ids
        if excess > 0:  # forget the oldest; the floor goes just above the last forgotten
            floor = max(floor, (entries[excess - 1][0] + 1) * 1000)
        kept = [e for e in entries if e[0] * 1000 >= floor]
        return EventIds(packed=_pack(kept), floor_ms=floor)

    @classmethod
    def from_history(cls, recent: Iterable[Mapping[str, Any]], *, evicted: bool) -> EventIds:
        """The ids of a state written before this module existed, from its ``recent`` items
        (which carried their event ids). Exact: recent holds the newest L events by time and
        an evicted event was never newer than the oldest kept, so with ``evicted`` the floor
        goes 1 ms above the oldest kept; without, every applied event is in ``recent``."""
        known = [(int(h["at_ms"]), str(h.get("event_id") or "")) for h in recent]
        if not known:
            return cls()
        floor: int | None = min(at for at, _ in known) + 1 if evicted else None
        if unknown := [at for at, eid in known if not eid]:  # written before ids were kept
            floor = max(floor or min(unknown), max(unknown) + 1)
        entries = sorted((_stored_s(at), id_hash(eid)) for at, eid in known if eid)
        return cls(packed=_pack(entries), floor_ms=floor)
