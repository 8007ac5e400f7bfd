"""What a replay sends and which of its events are scored (pure: no broker, no stack).

A 30Music slice is read with the one loader (``models.recsys.data.read_30music``), optionally
cut to a sample of its listeners, and time-split exactly as the offline tables split it
(``split_time``: training period = the first 80% of the slice's time span). The replay sends
**every** event of the (sampled) log in time order -- the training period warms the running
system up (co-plays, popularity, listener state) as it warmed the offline models up -- and
scores the test events the offline protocol scores: each test event of a known listener and
track (:attr:`ReplayEvent.case` is its index in ``Dataset.test``), so the live and offline
figures are over the same events.

Audio cold start: ``n_audio`` tracks that are *new in the test period* (never played in the
training period, so neither the offline models nor the warmed-up catalog know them) get one of
the real clips each (``<data_dir>/audio``); the replay uploads them before it starts, and
reports how often they were shown and hit.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from models.recsys.data import Dataset, Event, read_30music, split_time

TEST_FRAC = 0.2
"""The offline tables' time split (``split_time``'s default)."""


class ReplayEvent(BaseModel):
    """One event of the log, in send order."""

    model_config = ConfigDict(frozen=True)

    user: str = Field(description="Listener id as in the log.")
    track: str = Field(description="Track id as in the log.")
    at_s: int = Field(description="Original event time, unix seconds.")
    test_period: bool = Field(description="At or after the time split's cutoff.")
    case: int | None = Field(
        default=None, description="Index of the offline test case this event is, if scored."
    )


@dataclass(frozen=True, kw_only=True)
class ReplayPlan:
    """The events in send order, the offline view of the same log, the clips to upload."""

    name: str
    events: list[ReplayEvent]
    data: Dataset
    artists: dict[str, str]
    uploads: dict[str, Path]
    """Track id -> the clip uploaded as its audio (cold start)."""

    @property
    def t_min(self) -> int:
        return self.events[0].at_s

    @property
    def t_max(self) -> int:
        return self.events[-1].at_s

    @property
    def scored(self) -> list[ReplayEvent]:
        """The events that are offline test cases, in time order."""
        return [e for e in self.events if e.case is not None]


def sample_listeners(events: list[Event], listeners: int, seed: int) -> list[Event]:
    """The events of ``listeners`` listeners drawn at random (all when 0 or more than exist)."""
    users = sorted({e.user for e in events})
    if listeners <= 0 or listeners >= len(users):
        return events
    keep = set(np.random.default_rng(seed).choice(users, size=listeners, replace=False).tolist())
    return [e for e in events if e.user in keep]


def new_tracks(events: list[ReplayEvent], n: int) -> list[str]:
    """The ``n`` tracks first played in the test period with the most test-period plays."""
    before = {e.track for e in events if not e.test_period}
    counts = Counter(e.track for e in events if e.test_period and e.track not in before)
    return [t for t, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]]


def plan_30music(
    path: Path,
    *,
    listeners: int = 0,
    seed: int = 0,
    clips: list[Path] | None = None,
    n_audio: int = 0,
) -> ReplayPlan:
    """The replay of one slice; ``clips`` (sorted) are mapped onto ``n_audio`` new tracks."""
    raw = sample_listeners(read_30music(path), listeners, seed)
    data = split_time(raw, "30music", TEST_FRAC)
    ordered = sorted(raw, key=lambda e: e.time)  # stable: file order breaks ties, as split_time
    t_min, t_max = ordered[0].time, ordered[-1].time
    cutoff = t_min + (1.0 - TEST_FRAC) * (t_max - t_min)
    users, items = set(data.user_ids), set(data.item_ids)
    events: list[ReplayEvent] = []
    case = 0
    for e in ordered:
        test = e.time >= cutoff
        scored = test and e.user in users and e.item in items
        events.append(
            ReplayEvent(
                user=e.user,
                track=e.item,
                at_s=e.time,
                test_period=test,
                case=case if scored else None,
            )
        )
        case += scored
    if case != len(data.test):
        raise AssertionError(f"{case} scored events for {len(data.test)} offline test cases")
    chosen = new_tracks(events, min(n_audio, len(clips or [])))
    return ReplayPlan(
        name=Path(path).name,
        events=events,
        data=data,
        artists={e.item: e.artist for e in raw if e.artist},
        uploads=dict(zip(chosen, clips or [], strict=False)),
    )
