"""Per-user listening state and the catalog deltas it produces: pure update functions.

The user-state table holds :class:`UserState` objects (JSON only on its changelog,
:mod:`streams.state_codec`), and everything here is pure, testable without a broker.

A state record is bounded whatever the listener's history: the last ``L`` events, a fixed
size filter of older tracks ("already heard"), the replay memory of :mod:`streams.dedupe`
(at most ``dedupe_max_ids`` id hashes), three counters and the source offset of the last
applied event. Writing it once per listener and batch is therefore one small record, not a
copy of a growing history.

A listener counts once per track in the catalog's statistics (:meth:`DeltaBuilder.interaction`):
one listener playing a track 60 times must not make it everyone's "popular" pick.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.event_time import InputLimits, Verdict, event_time_verdict
from schemas.events import Interaction, InteractionType
from streams.dedupe import EventIds

#: co-played neighbours kept per track (the strongest ones)
COPLAY_LIMIT = 100
#: bits of one heard-filter generation; 8,192 bits hold ``HEARD_GENERATION`` ids at ~0.2%
#: false positives with 4 hashes (a false positive only hides one candidate from a list)
HEARD_BITS = 8192
HEARD_HASHES = 4
#: ids per generation; two generations: the filter remembers the last 500 to 1,000 tracks
HEARD_GENERATION = 500


class _State(BaseModel):
    model_config = ConfigDict(frozen=True)


class HistoryItem(_State):
    """One remembered interaction."""

    track_id: str = Field(description="Track the listener interacted with.")
    type: InteractionType = Field(description="play, skip or like.")
    at_ms: int = Field(description="When, unix milliseconds.")
    # No event id: replays are recognised by UserState.ids (streams.dedupe), which
    # remembers more events in less room.


@functools.lru_cache(maxsize=1 << 18)
def _bit_positions(track_id: str) -> tuple[tuple[int, int], ...]:
    """(byte, mask) of each of the k bits of a track id; cached: ranking asks for the same
    popular tracks over and over."""
    # Double hashing (Kirsch-Mitzenmacher): two 64-bit halves give all k positions.
    d = hashlib.blake2b(track_id.encode(), digest_size=16).digest()
    h1, h2 = int.from_bytes(d[:8], "little"), int.from_bytes(d[8:], "little") | 1
    bits = ((h1 + i * h2) % HEARD_BITS for i in range(HEARD_HASHES))
    return tuple((p >> 3, 1 << (p & 7)) for p in bits)


def _bits(encoded: str) -> bytearray:
    """A generation's bits from its base64 ("" is the empty generation)."""
    return bytearray(base64.b64decode(encoded)) if encoded else bytearray(HEARD_BITS // 8)


def _encoded(bits: bytes | bytearray) -> str:
    # An empty generation is written as "": the previous one stays empty until a listener
    # has heard ~550 tracks, and 1.4 KB of "AAAA" in every state write was a quarter of it.
    return base64.b64encode(bits).decode() if bits.count(0) != len(bits) else ""


class HeardFilter(_State):
    """Tracks heard before the ``recent`` window, as two rotating Bloom filters.

    Fixed size (2 KB) whatever the history: when the current generation holds
    ``HEARD_GENERATION`` ids it becomes the previous one and a new one starts, so the oldest
    tracks are forgotten in blocks. No false negatives within the window.
    """

    current: str = Field(default="", description="Bits, base64; empty: no bit set.")
    previous: str = Field(default="", description="Older generation, as ``current``.")
    count: int = Field(default=0, description="Ids added to the current generation.")

    def add(self, track_ids: Iterable[str]) -> HeardFilter:
        """A filter that also holds ``track_ids``."""
        ids = list(track_ids)
        if not ids:
            return self
        cur, prev, count = _bits(self.current), self.previous, self.count
        for tid in ids:
            if count >= HEARD_GENERATION:
                prev, cur, count = _encoded(cur), bytearray(HEARD_BITS // 8), 0
            for byte, mask in _bit_positions(tid):
                cur[byte] |= mask
            count += 1
        return HeardFilter(current=_encoded(cur), previous=prev, count=count)

    def matcher(self) -> HeardMatcher:
        """A fast membership test (the bits decoded once per filter value: the fold and the
        ranking of one batch ask for the same listener's filter)."""
        return _matcher(self.current, self.previous)


@functools.lru_cache(maxsize=2048)
def _matcher(current: str, previous: str) -> HeardMatcher:
    # Keyed by the filter's own strings (not the model: a copied model may carry a stale
    # cache); their hashes are computed once per str object.
    return HeardMatcher(_bits(current), _bits(previous))


class HeardMatcher:
    """Membership test of a :class:`HeardFilter` (may say yes for ~0.2% of unheard tracks)."""

    def __init__(self, *generations: bytes | bytearray) -> None:
        # A generation with no bit set holds nothing: left out, so a listener whose history
        # still fits the recent window (most of them) costs no hashing per candidate.
        self._gens = tuple(g for g in generations if g.count(0) != len(g))

    @property
    def empty(self) -> bool:
        """True when the filter holds no track."""
        return not self._gens

    def __contains__(self, track_id: object) -> bool:
        if not self._gens or not isinstance(track_id, str):
            return False
        pos = _bit_positions(track_id)
        for g in self._gens:
            for byte, mask in pos:
                if not g[byte] & mask:
                    break
            else:
                return True
        return False


class UserState(_State):
    """What the recommender remembers about one listener (bounded size)."""

    user_id: str = Field(description="Listener id (the table key).")
    recent: tuple[HistoryItem, ...] = Field(
        default=(), description="Last L interactions, oldest first (play, skip, like)."
    )
    heard: HeardFilter = Field(
        default_factory=HeardFilter, description="Tracks heard before `recent` (excluded)."
    )
    offset: int = Field(
        default=-1, description="Source offset of the last applied event (replays are older)."
    )
    plays: int = Field(default=0, description="Plays applied so far.")
    skips: int = Field(default=0, description="Skips applied so far.")
    likes: int = Field(default=0, description="Likes applied so far.")
    ids: EventIds = Field(
        default_factory=EventIds,
        description="Replay floor and ids of the events applied since (streams.dedupe).",
    )

    @model_validator(mode="before")
    @classmethod
    def _upgrade(cls, data: Any) -> Any:
        """A record written before ``ids`` existed: its ids come from ``recent`` (where they
        were kept then), so replays of what it holds are still recognised."""
        if isinstance(data, dict) and "ids" not in data and data.get("recent"):
            recent = [h for h in data["recent"] if isinstance(h, dict)]
            heard = data.get("heard")
            evicted = isinstance(heard, dict) and int(heard.get("count", 0)) > 0
            data = {**data, "ids": EventIds.from_history(recent, evicted=evicted)}
        return data

    def positives(self) -> list[HistoryItem]:
        """Recent plays and likes, oldest first."""
        return [h for h in self.recent if h.type is not InteractionType.SKIP]

    def skipped(self) -> list[HistoryItem]:
        """Recent skips, oldest first."""
        return [h for h in self.recent if h.type is InteractionType.SKIP]

    def verdict(
        self, ev: Interaction, *, offset: int | None, now_ms: int, limits: InputLimits
    ) -> Verdict:
        """Whether ``ev`` may be applied to this state, and if not, why.

        A broker redelivery (rebalance, crash before commit) comes back with its old offset,
        at most the last applied one; a producer's duplicate is caught by its id, however
        old (:mod:`streams.dedupe`); a time outside the window is rejected
        (:mod:`schemas.event_time`), and so is one below the listener's replay floor.
        """
        if offset is not None and offset <= self.offset:
            return Verdict.DUPLICATE
        at = _to_ms(ev)
        if (v := self.ids.verdict(ev.event_id, at)) is Verdict.DUPLICATE:
            return v
        return event_time_verdict(at, now_ms=now_ms, limits=limits) or v or Verdict.APPLIED

    def knows(self, ev: Interaction) -> bool:
        """True when the listener already contributed ``ev``'s kind of interaction with its
        track (played or liked it / skipped it) within what the state remembers: the recent
        events and the heard filter (which keeps no kind, so any earlier interaction counts).
        """
        skip = ev.type is InteractionType.SKIP
        if any(
            h.track_id == ev.track_id and (h.type is InteractionType.SKIP) == skip
            for h in self.recent
        ):
            return True
        return ev.track_id in self.heard.matcher()


def _to_ms(ev: Interaction) -> int:
    return int(ev.occurred_at.timestamp() * 1000)


def apply_interaction(
    state: UserState | None,
    ev: Interaction,
    *,
    seq_len: int,
    now_ms: int,
    limits: InputLimits,
    offset: int | None = None,
) -> tuple[UserState, Verdict]:
    """Fold one interaction into the user's state; ``now_ms`` is the worker's clock.

    Returns the new state and the verdict (:meth:`UserState.verdict`): anything but
    APPLIED leaves the state unchanged.
    """
    st = state or UserState(user_id=ev.user_id)
    verdict = st.verdict(ev, offset=offset, now_ms=now_ms, limits=limits)
    if verdict is not Verdict.APPLIED:
        return st, verdict
    at = _to_ms(ev)
    item = HistoryItem(track_id=ev.track_id, type=ev.type, at_ms=at)
    # Events may arrive slightly out of order across producers: keep `recent`
    # sorted by time so "most recent" weights mean what they say.
    ordered = sorted((*st.recent, item), key=lambda h: h.at_ms)
    evicted = ordered[:-seq_len] if len(ordered) > seq_len else []
    newest = ordered[-1].at_ms  # the newest event is never evicted: it is the last
    return (
        st.model_copy(
            update={
                "recent": tuple(ordered[-seq_len:]),
                "heard": st.heard.add(h.track_id for h in evicted),
                "offset": offset if offset is not None else st.offset,
                "plays": st.plays + (ev.type is InteractionType.PLAY),
                "skips": st.skips + (ev.type is InteractionType.SKIP),
                "likes": st.likes + (ev.type is InteractionType.LIKE),
                "ids": st.ids.remember(
                    ev.event_id, at, newest_ms=newest, now_ms=now_ms, limits=limits
                ),
            }
        ),
        Verdict.APPLIED,
    )


def coplay_partner(state: UserState, ev: Interaction, *, session_gap_s: float) -> str | None:
    """The track played just before ``ev`` in the same listening session, if any.

    ``state`` is the state *before* ``ev`` was applied. Skips are not co-plays:
    a skip right after a track says nothing good about the pair.
    """
    if ev.type is InteractionType.SKIP:
        return None
    at = _to_ms(ev)
    for h in reversed(state.recent):
        if h.type is InteractionType.SKIP or h.at_ms > at:
            continue
        if h.track_id != ev.track_id and at - h.at_ms <= session_gap_s * 1000:
            return h.track_id
        return None
    return None


class UploadInfo(_State):
    """What the catalog keeps of an uploaded track."""

    artist_id: str | None = Field(default=None, description="Artist (diversity rule).")
    uploaded_at_ms: int = Field(description="Upload time, unix ms (fresh bonus).")
    title: str | None = Field(default=None, description="Title, to name the track in reasons.")


class CatalogDelta(_State):
    """Internal message on ``track-deltas``: what one batch changed in the track statistics.

    One record per batch of interactions (or uploads) instead of one per event and track;
    every worker folds every delta into its own :class:`streams.catalog.Catalog`.
    """

    delta_id: str = Field(description="Unique id; a delta is applied once per worker.")
    plays: dict[str, int] = Field(
        default_factory=dict, description="Track -> listeners who first played or liked it."
    )
    skips: dict[str, int] = Field(
        default_factory=dict, description="Track -> listeners who first skipped it."
    )
    coplays: dict[str, dict[str, int]] = Field(
        default_factory=dict, description="Track -> co-played neighbour -> count (both ways)."
    )
    uploads: dict[str, UploadInfo] = Field(
        default_factory=dict, description="Tracks that became searchable in this batch."
    )
    artists: dict[str, str] = Field(
        default_factory=dict,
        description="Track -> artist, from interactions that named one the catalog did not "
        "know yet (or named another).",
    )
    at_ms: int = Field(default=0, description="Latest event time in the batch.")

    def is_empty(self) -> bool:
        """True when the delta changes nothing."""
        return not (self.plays or self.skips or self.coplays or self.uploads or self.artists)


class DeltaBuilder:
    """Accumulates one batch's track statistics into a :class:`CatalogDelta`.

    ``known_artists``: the catalog's track -> artist; an interaction's artist goes into the
    delta only when it tells the catalog something new, so a delta does not repeat the
    artist of every track played."""

    def __init__(self, *, known_artists: Mapping[str, str]) -> None:
        self.known_artists = known_artists
        self.artists: dict[str, str] = {}
        self.plays: Counter[str] = Counter()
        self.skips: Counter[str] = Counter()
        self.coplays: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.uploads: dict[str, UploadInfo] = {}
        self.at_ms = 0

    def interaction(self, before: UserState, ev: Interaction, *, session_gap_s: float) -> None:
        """Count a new interaction; ``before`` is the state it was applied to.

        A listener counts once per track: a play (or like) counts only if they had not
        played or liked the track before, a skip only if they had not skipped it
        (:meth:`UserState.knows`), so a track's plays are listeners, not events. The
        memory is the recent events and the heard filter, 550 to 1,050 events: one listener
        adds at most 1 to a track per ~550 of their own events. A Bloom false positive
        (~0.2%) can only say "known" for an unheard track, so it under-counts one listener,
        never over-counts. A co-play counts only with a counted play, so one listener adds
        at most one co-play per track they play, however often they repeat a pair.
        """
        self.at_ms = max(self.at_ms, _to_ms(ev))
        a = ev.artist_id
        if a and self.known_artists.get(ev.track_id) != a:
            self.artists[ev.track_id] = a
        if before.knows(ev):
            return
        if ev.type is InteractionType.SKIP:
            self.skips[ev.track_id] += 1
        else:
            self.plays[ev.track_id] += 1
        prev = coplay_partner(before, ev, session_gap_s=session_gap_s)
        if prev is not None:
            self.coplays[prev][ev.track_id] += 1
            self.coplays[ev.track_id][prev] += 1

    def upload(self, track_id: str, info: UploadInfo) -> None:
        """Record a track that became searchable."""
        self.uploads[track_id] = info
        self.at_ms = max(self.at_ms, info.uploaded_at_ms)

    def build(self, delta_id: str) -> CatalogDelta:
        """The delta of everything counted so far."""
        return CatalogDelta(
            delta_id=delta_id,
            plays=dict(self.plays),
            skips=dict(self.skips),
            coplays={t: dict(c) for t, c in self.coplays.items()},
            uploads=dict(self.uploads),
            artists=dict(self.artists),
            at_ms=self.at_ms,
        )
