"""The live ranking, in process: a replay plan folded and ranked by the agent's own functions.

``python -m infra.replay.shadow --path SLICE [--split test|valid] [--set artist=0.5 ...]
[--top-n N]`` walks a :class:`~infra.replay.plan.ReplayPlan`'s events in time order through
the functions the worker runs (``streams.state.apply_interaction`` and ``DeltaBuilder`` into a
``streams.catalog.Catalog``; ``gather_pool`` and ``lists_of`` (each kind of list) with the
served sequence model's top-N from ``serving.user_model.UserModel``, as Triton serves it), and
scores each case against the lists its listener would hold. No broker, no Triton, no Milvus:
one slice in about a minute, not six. ``--top-n N`` puts the sequence model's N best unheard
tracks in each pool instead of the agent's ``streams.candidates.sequence_top_n``, to measure
what a longer reach would buy.

What it leaves out, so what only ``resonate replay`` measures: audio (the cold-start uploads
and their vectors), batching and timing (every event is its own batch, every list is fresh),
the broker and the services. On slice 0 it gives the replay's live HR@20 to the fourth
decimal for both kinds of list (``docs/results.md``, "Live"), so it is the tool to choose the
ranking's parameters on the live path; ``--split valid`` scores each listener's last
training event (the offline validation cases), so a choice made there is not made on the
replay's test events.
"""

from __future__ import annotations

import argparse
import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from infra.cli_common import cli_settings
from infra.replay.plan import ReplayPlan, plan_30music
from models.recsys.prequential import score
from schemas.event_time import InputLimits
from schemas.events import Interaction, InteractionType, ListKind
from schemas.settings import Settings
from serving.user_model import UserModel
from streams.candidates import VectorCache, gather_pool, sequence_top_n
from streams.catalog import Catalog
from streams.fusion import DEFAULT_WEIGHTS, SEQUENCE_WEIGHTS, FusionWeights
from streams.lists import lists_of
from streams.state import DeltaBuilder, UserState, apply_interaction

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class ShadowOptions:
    """What to rank with: lists of ``k`` from pools holding the sequence model's ``top_n``
    best unheard tracks, the diversity cap, weights overridden by name."""

    k: int
    top_n: int
    max_per_artist: int
    seq_len: int
    session_gap_s: float
    limits: InputLimits
    overrides: dict[str, float]


def observed(plan: ReplayPlan, split: str) -> dict[int, int]:
    """Event position -> case: the test cases (the replay's scored events), or for
    ``valid`` each listener's last training-period play of their validation target."""
    if split == "test":
        return {n: e.case for n, e in enumerate(plan.events) if e.case is not None}
    d = plan.data
    want = {d.user_ids[c.user]: (k, d.item_ids[c.target]) for k, c in enumerate(d.valid)}
    out: dict[str, tuple[int, int]] = {}
    for n, e in enumerate(plan.events):
        if not e.test_period and e.user in want and want[e.user][1] == e.track:
            out[e.user] = (n, want[e.user][0])
    return dict(out.values())


def _lists(
    st: UserState, catalog: Catalog, model: UserModel, now_ms: int, o: ShadowOptions
) -> dict[ListKind, list[str]]:
    """Both kinds of list for one listener, as the refresher ranks them."""
    seq: list[tuple[str, float]] = []
    history = [h.track_id for h in st.positives()]
    if history:
        ids, scores, _ = model.recommend(history)
        n = o.top_n  # the model may return more (its own top-N): the agent asks for n
        seq = list(zip(ids[:n], (float(s) for s in scores[:n]), strict=False))
    w: FusionWeights = (SEQUENCE_WEIGHTS if seq else DEFAULT_WEIGHTS).replace(**o.overrides)
    popular, fresh = catalog.lists(
        top_popular=2 * o.k, top_fresh=o.k, now_ms=now_ms, fresh_window_ms=w.fresh_window_ms
    )
    pool = gather_pool(
        st,
        [],
        cache=VectorCache(),
        catalog=catalog,
        popular=popular,
        fresh=fresh,
        now_ms=now_ms,
        weights=w,
        sequence=seq,
    )
    got = lists_of(
        st, pool, tuple(ListKind), catalog=catalog, weights=w, k=o.k, cap=o.max_per_artist
    )
    return {kind: [i.track_id for i in items] for kind, items in got.items()}


def shadow(plan: ReplayPlan, model: UserModel, split: str, o: ShadowOptions) -> dict[str, Any]:
    """HR@20 (and the other figures) of each kind on ``split``'s cases."""
    cases = observed(plan, split)
    catalog, states = Catalog(ttl_s=0.0), dict[str, UserState]()
    pairs: dict[ListKind, list[tuple[str, list[str] | None, str]]] = {k: [] for k in ListKind}
    for n, ev in enumerate(plan.events):
        st = states.get(ev.user)
        now_ms = int(ev.at_s * 1000) + 1000  # the list the event meets: made just before it
        if n in cases:
            got = _lists(st, catalog, model, now_ms, o) if st is not None else {}
            for kind, pr in pairs.items():
                pr.append((ev.user, got.get(kind), ev.track))
        inter = Interaction(
            event_id=uuid.uuid4().hex,
            type=InteractionType.PLAY,
            user_id=ev.user,
            track_id=ev.track,
            occurred_at=datetime.fromtimestamp(ev.at_s, UTC),
            artist_id=plan.artists.get(ev.track),
        )
        before = st or UserState(user_id=ev.user)
        states[ev.user], _ = apply_interaction(
            st, inter, seq_len=o.seq_len, now_ms=now_ms, limits=o.limits
        )
        delta = DeltaBuilder(known_artists=catalog.artists)
        delta.interaction(before, inter, session_gap_s=o.session_gap_s)
        catalog.apply(delta.build(f"shadow:{n}"))
    return {
        str(kind): {m: f.model_dump() for m, f in score(pr).summary.items()}
        for kind, pr in pairs.items()
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line (``sys.argv`` when ``argv`` is None)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--path", type=Path, required=True, help="30Music slice")
    p.add_argument("--models", type=Path, default=Path("run/replay/user-model"))
    p.add_argument("--split", choices=("test", "valid"), default="test")
    p.add_argument("--k", type=int, default=20, help="items per list (the replay's 20)")
    p.add_argument(
        "--top-n",
        type=int,
        help="sequence-model tracks per pool (default: as many as the agent asks for)",
    )
    p.add_argument("--set", action="append", default=[], help="weight override, name=value")
    p.add_argument("--out", type=Path)
    return p.parse_args(argv)


def shadow_options(args: argparse.Namespace, s: Settings) -> ShadowOptions:
    """The options ``args`` ask for, the rest as the settings serve them."""
    return ShadowOptions(
        k=args.k,
        top_n=sequence_top_n(args.k) if args.top_n is None else args.top_n,
        max_per_artist=s.max_per_artist,
        seq_len=s.seq_len,
        session_gap_s=s.session_gap_s,
        limits=InputLimits.from_settings(s),
        overrides={k: float(v) for k, v in (kv.split("=", 1) for kv in args.set)},
    )


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    s = cli_settings()
    o = shadow_options(args, s)
    plan = plan_30music(args.path)
    # The agent takes the first top_n of what the model returns (user_model_top_n, as
    # Triton is configured): a longer reach needs the model to return that many.
    model = UserModel(args.models / args.path.stem, top_n=max(o.top_n, s.user_model_top_n))
    report = {
        "slice": args.path.name,
        "split": args.split,
        "overrides": o.overrides,
        "max_per_artist": o.max_per_artist,
        "top_n": o.top_n,
        "figures": shadow(plan, model, args.split, o),
    }
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)  # noqa: T201 -- the command's output


if __name__ == "__main__":
    main()
