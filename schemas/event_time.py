"""Which event times the pipeline believes: pure rules, the wall clock passed in.

Producers stamp events with their own clocks, and a clock can be wrong (a phone set to
year 0001, a default of 9999-12-31) or a record can be old (a replay of last year's
topic). Such times must not reach what trusts them: the latency histograms (one event
dated year 0001 adds 6.4e10 s to a sum), the listener's replay floor
(:mod:`streams.dedupe`) or the "new upload" signal (a 9999 upload would be new forever).

* Interactions outside ``[now - event_max_age_s, now + event_max_ahead_s]`` are
  **rejected**: not applied, counted, and handed back to the agent to dead-letter (they
  are kept, so a fixed clock can be replayed). Clamping them would invent a time; a play
  "now" that happened at an unknown time is worse than no play.
* Uploads are **clamped**, not rejected: the audio is real and costly to embed, only the
  clock is wrong. A platform cannot know of an upload before it happened, so a time ahead
  of the worker's clock is skew, and the moment the pipeline first saw the upload is the
  best estimate (:func:`upload_time_ms`). An old upload time is kept (a catalog backfill
  has real old dates); it is simply not fresh.
* A latency is observed only for times inside the window (:func:`latency_s`).
* "Fresh" needs ``0 <= now - uploaded_at <= window`` (:func:`is_fresh`): a future time is
  not fresh until it comes, so no stored time keeps a track fresh for longer than the
  window after that time.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from schemas.settings import Settings


class Verdict(StrEnum):
    """What folding one interaction did; the rejections are dead-letter reasons."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"  # counted, dropped: the same event was applied before
    LATE = "late"  # older than the listener's replay floor (streams.dedupe): rejected
    TOO_OLD = "event-time-too-old"  # rejected
    IN_FUTURE = "event-time-in-future"  # rejected

    @property
    def rejected(self) -> bool:
        """True for an event that is neither applied nor a known duplicate: set it aside."""
        return self in (Verdict.LATE, Verdict.TOO_OLD, Verdict.IN_FUTURE)


class InputLimits(BaseModel):
    """The time rules of :mod:`schemas.event_time` and :mod:`streams.dedupe`, in milliseconds."""

    model_config = ConfigDict(frozen=True)

    max_age_ms: int = Field(365 * 86_400_000, description="Oldest accepted event, ms before now.")
    max_ahead_ms: int = Field(86_400_000, description="Newest accepted event, ms after now.")
    dedupe_horizon_ms: int = Field(
        86_400_000, description="Replay floor lag behind the listener's newest event, ms."
    )
    dedupe_max_ids: int = Field(256, ge=1, description="Event ids remembered per listener.")

    @classmethod
    def from_settings(cls, s: Settings) -> InputLimits:
        """The limits configured in ``s``."""
        return cls(
            max_age_ms=int(s.event_max_age_s * 1000),
            max_ahead_ms=int(s.event_max_ahead_s * 1000),
            dedupe_horizon_ms=int(s.dedupe_horizon_s * 1000),
            dedupe_max_ids=s.dedupe_max_ids,
        )


def event_time_verdict(at_ms: int, *, now_ms: int, limits: InputLimits) -> Verdict | None:
    """None when an event time is believable, else why not (too old, in the future)."""
    if at_ms < now_ms - limits.max_age_ms:
        return Verdict.TOO_OLD
    if at_ms > now_ms + limits.max_ahead_ms:
        return Verdict.IN_FUTURE
    return None


def upload_time_ms(uploaded_at_ms: int, *, now_ms: int) -> int:
    """The upload time to store and rank with: the stated one, but never after ``now_ms``
    (the worker's clock when it first handles the upload; see the module docstring).

    Use it for both the Milvus row and the catalog delta so every reader agrees; the
    clamped value travels in the delta, so a worker replaying the deltas later does not
    clamp again to its own, later "now".
    """
    return min(uploaded_at_ms, now_ms)


def latency_s(at_ms: int, *, now_ms: int, limits: InputLimits) -> float | None:
    """Seconds from an event time to ``now_ms``, or None when the time is outside the
    window and must not be observed (a wrong clock is not a slow pipeline)."""
    if event_time_verdict(at_ms, now_ms=now_ms, limits=limits) is not None:
        return None
    return max(0, now_ms - at_ms) / 1000


def is_fresh(uploaded_at_ms: int | None, *, now_ms: int, window_ms: int) -> bool:
    """True for an upload at most ``window_ms`` old and not dated in the future.

    A future time is not fresh until it comes: reading it as "now" would make a 9999
    upload new forever. Uploads are clamped at ingestion (:func:`upload_time_ms`), so a
    future time here only comes from an older record or from a worker whose clock is a
    little behind another's, and then waits at most that skew.
    """
    if not uploaded_at_ms:
        return False
    return 0 <= now_ms - uploaded_at_ms <= window_ms
