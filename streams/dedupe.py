"""Replay detection by event id, in bounded memory, whatever the listener sent since.

The old rule (offset, or the id among the last L events) let a replay older than the
listener's last 50 events be applied again. Here each listener keeps a **floor** (a time)
and the ids of the events applied at or after it:

* an event whose id is remembered is a *duplicate* (dropped, counted);
* an event older than the floor is *late* (rejected and dead-lettered: kept, not guessed);
* any other event is applied and its id remembered.

The floor only rises, to ``min(newest event, now) - dedupe_horizon`` after each applied
event, and further when more than ``dedupe_max_ids`` ids are remembered: then the oldest
are forgotten and the floor moves just above them. The floor follows the listener's own
event times, not the wall clock, so a worker catching up on a day-old backlog applies it;
the ``min(.., now)`` keeps one event from a clock up to a day ahead (the window allows it)
from pushing the floor past the listener's real events.

Invariant (I): every applied event whose time is at or after the floor has its id
remembered. It holds initially (nothing applied); applying an event remembers its id; an
id is forgotten only when its stored time (the event time in ms) is below the new floor,
so the forgotten event's own time is below the floor too. Hence an applied event sent
again is either remembered (duplicate) or older than the floor (late): **it is never
applied twice**, however many events came in between. The limits: a different id hashing
to the same 64 bits is taken for a duplicate (chance
``dedupe_max_ids / 2**64`` per event), and an id re-sent with a *changed* time is a
different claim (caught while the id is remembered, late if the new time is below the
floor, otherwise applied).

Memory: at most ``dedupe_max_ids`` pairs of (8-byte id hash, 8-byte time in ms), 4 KB raw,
5.5 KB as base64 at the default 256. Milliseconds, not seconds: with whole seconds a burst
of more than ``dedupe_max_ids`` events within one second (a backfill, a replay, a load
test) raised the floor to the next second and made the rest of the burst late. A time
before 1970 is stored as 1970 (rounding up, safe).

The cost of the bound: a listener's event that arrives more than ``dedupe_horizon`` after a
newer one, or after ``dedupe_max_ids`` newer ones, is late. Those are stragglers of a
broken producer, and they are dead-lettered, not lost silently.
"""

from __future__ import annotations

import base64
import bisect
import functools
import hashlib
import sys
from array import array
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from schemas.event_time import InputLimits, Verdict


@functools.lru_cache(maxsize=1 << 16)
def id_hash(event_id: str) -> bytes:
    """64-bit hash of an event id, 8 bytes (what is remembered instead of the id)."""
    return hashlib.blake2b(event_id.encode(), digest_size=8).digest()


def _stored_ms(at_ms: int) -> int:
    """A time as remembered (ms; before 1970 rounds up to 1970, see the module docstring)."""
    return max(0, at_ms)


class _Ids:
    """Decoded entries, oldest first: the id hashes as one byte string (8 bytes each, so a
    lookup is one C-speed ``find``) and their stored times (ms) as an array."""

    __slots__ = ("hashes", "secs")

    def __init__(self, hashes: bytes, secs: array[int]) -> None:
        self.hashes, self.secs = hashes, secs

    @classmethod
    def decode(cls, packed: str) -> _Ids:
        raw = base64.b64decode(packed)
        n = len(raw) // 16
        secs = array("Q", raw[8 * n : 16 * n])
        if sys.byteorder == "big":  # the record is little-endian everywhere
            secs.byteswap()
        return cls(raw[: 8 * n], secs)

    def encode(self) -> str:
        secs = array("Q", self.secs)
        if sys.byteorder == "big":
            secs.byteswap()
        return base64.b64encode(self.hashes + secs.tobytes()).decode()

    def has(self, h: bytes) -> bool:
        """True when the 8-byte hash ``h`` is remembered."""
        i = self.hashes.find(h)
        while i != -1 and i % 8:  # a match straddling two hashes is no match
            i = self.hashes.find(h, i + 1)
        return i != -1


class EventIds(BaseModel):
    """A listener's replay floor and the ids applied at or after it (bounded)."""

    model_config = ConfigDict(frozen=True)

    packed: str = Field(
        default="",
        description="base64 of n uint64 id hashes then n uint64 unix ms, little-endian, "
        "oldest first.",
    )
    floor_ms: int | None = Field(
        default=None, description="Events older than this (unix ms) are late; None = no floor."
    )

    @functools.cached_property
    def _ids(self) -> _Ids:
        """The decoded entries (once per instance; ``remember`` hands them on)."""
        return _Ids.decode(self.packed)

    def __len__(self) -> int:
        return len(self._ids.secs)

    def verdict(self, event_id: str, at_ms: int) -> Verdict | None:
        """DUPLICATE for a remembered id, LATE for a time below the floor, else None."""
        if self._ids.has(id_hash(event_id)):
            return Verdict.DUPLICATE
        if self.floor_ms is not None and at_ms < self.floor_ms:
            return Verdict.LATE
        return None

    def remember(
        self, event_id: str, at_ms: int, *, newest_ms: int, now_ms: int, limits: InputLimits
    ) -> EventIds:
        """The ids after applying this event; ``newest_ms`` is the listener's newest event
        time including this one. Raises the floor and forgets what falls below it."""
        ids, at_s = self._ids, _stored_ms(at_ms)
        i = bisect.bisect_right(ids.secs, at_s)
        secs = ids.secs[:i] + array("Q", [at_s]) + ids.secs[i:]
        hashes = ids.hashes[: 8 * i] + id_hash(event_id) + ids.hashes[8 * i :]
        # min(.., now): an event from a clock a day ahead must not push the floor past
        # events that happened before it.
        floor = min(newest_ms, now_ms) - limits.dedupe_horizon_ms
        if self.floor_ms is not None:
            floor = max(floor, self.floor_ms)
        excess = len(secs) - limits.dedupe_max_ids
        if excess > 0:  # forget the oldest; the floor goes just above the last forgotten
            floor = max(floor, secs[excess - 1] + 1)
        cut = bisect.bisect_left(secs, floor)  # the first kept is at or after the floor
        kept = _Ids(hashes[8 * cut :], secs[cut:])
        out = EventIds(packed=kept.encode(), floor_ms=floor)
        # The fold applies a listener's events one after another: hand the decoded entries
        # on instead of decoding the string just built (cached_property reads __dict__).
        out.__dict__["_ids"] = kept
        return out

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
        entries = sorted((_stored_ms(at), id_hash(eid)) for at, eid in known if eid)
        ids = _Ids(b"".join(h for _, h in entries), array("Q", [t for t, _ in entries]))
        return cls(packed=ids.encode(), floor_ms=floor)
