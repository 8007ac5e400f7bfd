"""Per-user listening state and per-track signals: pure update functions.

The Faust tables store these as JSON dicts; the agents convert at the boundary
(``UserState.model_validate`` / ``model_dump(mode="json")``) so everything here is
testable without a broker.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from schemas.events import Interaction, InteractionType

#: how many recent event ids a user remembers to drop replays after a rebalance
DEDUPE_WINDOW = 200
#: how many distinct tracks a user remembers for "already heard" exclusion
HEARD_LIMIT = 1000
#: co-played neighbours kept per track (the strongest ones)
COPLAY_LIMIT = 100
#: recent signal ids kept per track to drop replays of the internal topic
TRACK_DEDUPE_WINDOW = 64


class _State(BaseModel):
    model_config = ConfigDict(frozen=True)


class HistoryItem(_State):
    """One remembered interaction."""

    track_id: str = Field(description="Track the listener interacted with.")
    type: InteractionType = Field(description="play, skip or like.")
    at_ms: int = Field(description="When, unix milliseconds.")


class UserState(_State):
    """What the recommender remembers about one listener."""

    user_id: str = Field(description="Listener id (the table key).")
    recent: tuple[HistoryItem, ...] = Field(
        default=(), description="Last L interactions, oldest first (play, skip, like)."
    )
    heard: tuple[str, ...] = Field(
        default=(), description="Tracks ever played, skipped or liked (bounded), oldest first."
    )
    event_ids: tuple[str, ...] = Field(
        default=(), description="Recent event ids, to count a replayed event once."
    )
    plays: int = Field(default=0, description="Plays applied so far.")
    skips: int = Field(default=0, description="Skips applied so far.")
    likes: int = Field(default=0, description="Likes applied so far.")

    def positives(self) -> list[HistoryItem]:
        """Recent plays and likes, oldest first."""
        return [h for h in self.recent if h.type is not InteractionType.SKIP]

    def skipped(self) -> list[HistoryItem]:
        """Recent skips, oldest first."""
        return [h for h in self.recent if h.type is InteractionType.SKIP]


def _to_ms(ev: Interaction) -> int:
    return int(ev.occurred_at.timestamp() * 1000)


def apply_interaction(
    state: UserState | None, ev: Interaction, *, seq_len: int
) -> tuple[UserState, bool]:
    """Fold one interaction into the user's state.

    Returns the new state and whether the event was new; a replayed ``event_id``
    (at-least-once delivery, a rebalance) leaves the state unchanged.
    """
    st = state or UserState(user_id=ev.user_id)
    if ev.event_id in st.event_ids:
        return st, False
    item = HistoryItem(track_id=ev.track_id, type=ev.type, at_ms=_to_ms(ev))
    # Events may arrive slightly out of order across producers: keep `recent`
    # sorted by time so "most recent" weights mean what they say.
    recent = sorted((*st.recent, item), key=lambda h: h.at_ms)[-seq_len:]
    heard = tuple(t for t in st.heard if t != ev.track_id) + (ev.track_id,)
    return (
        st.model_copy(
            update={
                "recent": tuple(recent),
                "heard": heard[-HEARD_LIMIT:],
                "event_ids": (*st.event_ids, ev.event_id)[-DEDUPE_WINDOW:],
                "plays": st.plays + (ev.type is InteractionType.PLAY),
                "skips": st.skips + (ev.type is InteractionType.SKIP),
                "likes": st.likes + (ev.type is InteractionType.LIKE),
            }
        ),
        True,
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


class TrackSignal(_State):
    """Internal message on the track-signals topic, keyed by ``track_id``."""

    signal_id: str = Field(description="Unique id, derived from the source event.")
    track_id: str = Field(description="Track the signal is about (the key).")
    kind: str = Field(description="play | skip | like | coplay | upload")
    other_track_id: str | None = Field(default=None, description="Co-played neighbour.")
    artist_id: str | None = Field(default=None, description="Artist, for uploads.")
    at_ms: int = Field(description="Event time, unix ms.")


class TrackStats(_State):
    """Collaborative and popularity signal of one track, learnt from the stream."""

    track_id: str = Field(description="Track id (the table key).")
    plays: int = Field(default=0, description="Plays and likes seen.")
    skips: int = Field(default=0, description="Skips seen.")
    coplays: dict[str, int] = Field(
        default_factory=dict, description="Neighbour track -> times played in one session."
    )
    artist_id: str | None = Field(default=None, description="Artist, once uploaded.")
    uploaded_at_ms: int | None = Field(default=None, description="Upload time, if uploaded.")
    last_ms: int = Field(default=0, description="Time of the latest signal.")
    signal_ids: tuple[str, ...] = Field(default=(), description="Recent signal ids (dedupe).")

    def popularity(self) -> float:
        """Plays net of skips; skips count half, a skip is weaker evidence than a play."""
        return max(0.0, self.plays - 0.5 * self.skips)


def apply_signal(stats: TrackStats | None, sig: TrackSignal) -> tuple[TrackStats, bool]:
    """Fold one track signal into the track's stats; replays change nothing."""
    st = stats or TrackStats(track_id=sig.track_id)
    if sig.signal_id in st.signal_ids:
        return st, False
    upd: dict[str, object] = {
        "signal_ids": (*st.signal_ids, sig.signal_id)[-TRACK_DEDUPE_WINDOW:],
        "last_ms": max(st.last_ms, sig.at_ms),
    }
    if sig.kind in ("play", "like"):
        upd["plays"] = st.plays + 1
    elif sig.kind == "skip":
        upd["skips"] = st.skips + 1
    elif sig.kind == "coplay" and sig.other_track_id:
        co = dict(st.coplays)
        co[sig.other_track_id] = co.get(sig.other_track_id, 0) + 1
        if len(co) > COPLAY_LIMIT:
            co = dict(sorted(co.items(), key=lambda kv: -kv[1])[:COPLAY_LIMIT])
        upd["coplays"] = co
    elif sig.kind == "upload":
        upd["artist_id"] = sig.artist_id
        upd["uploaded_at_ms"] = sig.at_ms
    return st.model_copy(update=upd), True


def signals_for(before: UserState, ev: Interaction, *, session_gap_s: float) -> list[TrackSignal]:
    """Track signals one new interaction produces: its own count plus co-plays both ways."""
    at = _to_ms(ev)
    out = [
        TrackSignal(
            signal_id=f"{ev.event_id}:{ev.type.value}",
            track_id=ev.track_id,
            kind=ev.type.value,
            at_ms=at,
        )
    ]
    prev = coplay_partner(before, ev, session_gap_s=session_gap_s)
    if prev is not None:
        for a, b in ((prev, ev.track_id), (ev.track_id, prev)):
            out.append(
                TrackSignal(
                    signal_id=f"{ev.event_id}:co:{a}",
                    track_id=a,
                    kind="coplay",
                    other_track_id=b,
                    at_ms=at,
                )
            )
    return out
