"""Which consistency level each read of the track store asks Milvus for.

The weakest level that is still correct: reads use ``consistency`` ("Bounded" by default)
and no ``flush`` (which seals segments and is slow) is ever needed.

* Recommendation reads (``search``, ``get``, ``recent``) tolerate seconds of staleness: a
  track uploaded a moment ago reaches listeners through the fresh-upload candidates anyway,
  and the next refresh sees it. "Bounded" guarantees at most ``common.gracefulTime`` (5 s by
  default) of staleness without waiting for the server's time tick. Measured on the Milvus
  2.3.5 standalone server (HNSW, 2 cores): a search takes ~200 ms with "Strong" (it waits for
  the next time tick) and ~2-3 ms with "Bounded" ("Session" ~4 ms, "Eventually" ~2 ms).
* Read-your-writes where it matters: with ``read_your_writes`` (default), a read issued by
  this process within ``graceful_s`` of its own ``upsert`` is sent as "Session", whose
  guarantee timestamp is that write's, so the just-written rows are found by the very next
  search (it waits for that one write, ~200 ms on a server, only in that window). Together
  the guarantee is max(own last write, now - gracefulTime): Bounded plus read-your-writes.
* ``count()`` is exact ("Strong"); it is not on a hot path.

Milvus Lite (one process, no time tick) shows every write to the very next read at any level.
"""

from __future__ import annotations

import time
from collections.abc import Callable

CONSISTENCY_LEVELS = ("Strong", "Bounded", "Session", "Eventually")
# Milvus' default common.gracefulTime: how stale a "Bounded" read may be.
DEFAULT_GRACEFUL_S = 5.0


class ReadLevels:
    """The level of the next read, from the configured one and this process' own writes.

    Not locked: the store calls it under its own lock.
    """

    def __init__(
        self,
        *,
        consistency: str,
        read_your_writes: bool,
        graceful_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if consistency not in CONSISTENCY_LEVELS:
            raise ValueError(f"consistency must be one of {CONSISTENCY_LEVELS}: {consistency!r}")
        self.consistency = consistency
        self.read_your_writes = read_your_writes
        self.graceful_s = graceful_s
        self._clock = clock
        self._last_write = -float("inf")  # clock time of this store's last upsert/delete
        self._last_delete = -float("inf")  # ... of its last delete (see level)

    def wrote(self) -> None:
        """This process has just upserted rows."""
        self._last_write = self._clock()

    def deleted(self) -> None:
        """This process has just deleted rows."""
        self._last_write = self._last_delete = self._clock()

    def level(self) -> str:
        """Consistency of the next read: ``consistency``, or "Session" right after a write.

        Right after this store's own delete it is "Strong": measured on the Milvus 2.3
        server, a "Session" read still returns rows this client just deleted (pymilvus
        advances the session timestamp on inserts and upserts only). Deletes are rare
        (tests, re-indexing), so the ~200 ms time-tick wait is paid seldom.
        """
        now = self._clock()
        if self.read_your_writes and now - self._last_delete < self.graceful_s:
            return "Strong"
        if (
            self.read_your_writes
            and self.consistency in ("Bounded", "Eventually")
            and now - self._last_write < self.graceful_s
        ):
            return "Session"
        return self.consistency
