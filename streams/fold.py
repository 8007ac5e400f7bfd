"""Fold: a batch of interactions applied to the listeners' states (pure).

One state read and one state write per listener, one catalog delta for the batch; events
whose time is implausible or too late come back rejected, replays are counted. The rules
per event are :func:`streams.state.apply_interaction` and :mod:`schemas.event_time`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from schemas.event_time import InputLimits, Verdict
from schemas.events import Interaction
from streams.state import CatalogDelta, DeltaBuilder, UserState, apply_interaction


@dataclass(frozen=True)
class Incoming:
    """One decoded interaction and where it came from."""

    event: Interaction
    partition: int
    offset: int | None
    source: Any = None  # the framework's event (its partition routes the state write)


@dataclass
class Touched:
    """A listener whose state this batch changed, and the events that changed it."""

    state: UserState
    events: list[Interaction] = field(default_factory=list)


@dataclass(frozen=True)
class Folded:
    """What one batch did: listeners to refresh, the catalog delta, replays seen, and the
    events rejected with their reason (a :class:`~schemas.event_time.Verdict` value:
    ``event-time-too-old``, ``event-time-in-future`` or ``late``), to be dead-lettered.

    A rejected event changes no state, not even the listener's offset: a broker redelivery
    of it is rejected (and dead-lettered) again, so the dead letters are at-least-once and
    their readers go by ``event_id``.
    """

    listeners: list[Touched]
    delta: CatalogDelta | None
    duplicates: int
    rejected: list[tuple[Incoming, str]] = field(default_factory=list)


def fold_batch(
    batch: Sequence[Incoming],
    *,
    get_state: Callable[[str], UserState | None],
    put_state: Callable[[UserState, Incoming], None],
    seq_len: int,
    session_gap_s: float,
    now_ms: int,
    limits: InputLimits,
    known_artists: Mapping[str, str],
) -> Folded:
    """Apply a batch in order; write each listener's state once, with its last event.

    ``now_ms`` is the worker's clock, read once per batch by the caller; events it rejects
    change no state and come back in ``Folded.rejected``.
    """
    by_user: dict[str, list[Incoming]] = {}
    for inc in batch:
        by_user.setdefault(inc.event.user_id, []).append(inc)
    builder = DeltaBuilder(known_artists=known_artists)
    touched: list[Touched] = []
    duplicates = 0
    rejected: list[tuple[Incoming, str]] = []
    for uid, incs in by_user.items():
        state = get_state(uid) or UserState(user_id=uid)
        t = Touched(state=state)
        last: Incoming | None = None
        for inc in incs:
            before = state
            state, verdict = apply_interaction(
                state, inc.event, seq_len=seq_len, now_ms=now_ms, limits=limits, offset=inc.offset
            )
            if verdict is Verdict.DUPLICATE:
                duplicates += 1
            if verdict.rejected:
                rejected.append((inc, verdict.value))
            if verdict is not Verdict.APPLIED:
                continue
            builder.interaction(before, inc.event, session_gap_s=session_gap_s)
            t.events.append(inc.event)
            last = inc
        if last is not None:
            t.state = state
            put_state(state, last)
            touched.append(t)
    delta = builder.build(f"fold:{uuid.uuid4().hex}") if touched else None
    return Folded(listeners=touched, delta=delta, duplicates=duplicates, rejected=rejected)
