"""The inspector page: server-rendered HTML fragments, live through SSE plus a little JS.

``/inspector`` renders the whole page; the JS (``static/inspector.js``) re-fetches a
fragment when the listener's SSE stream (``/users/{id}/events``) says it changed, when a
track is picked, and every few seconds for the pipeline panel.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from html import escape
from pathlib import Path
from string import Template

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, StreamingResponse

from schemas.events import ListKind, Recommendation
from serving.api.pipeline import PipelineStats
from serving.api.problems import ProblemError
from serving.api.routes import Rt
from serving.milvus_schema import Hit, TrackRow

STATIC = Path(__file__).parent / "static"
_SIGNALS = (
    ("sounds like", "audio"),
    ("listeners who played", "co-plays"),
    ("fits what you", "sequence"),
    ("new upload", "fresh"),
    ("popular", "popularity"),
    ("back in your rotation", "familiar"),
    ("more by", "artist"),
)
_CHECK_S = 1.0  # how often a live stream notices a closed connection

router = APIRouter(include_in_schema=False)


def signal_of(reason: str) -> str:
    """Which fusion component an item's reason names (streams/fusion.py ``_reason``)."""
    return next((sig for prefix, sig in _SIGNALS if reason.startswith(prefix)), "other")


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _track_link(track_id: str, label: str = "") -> str:
    text = f"{_e(label)} <small>{_e(track_id)}</small>" if label else _e(track_id)
    return f'<a href="#" class="track" data-track="{_e(track_id)}">{text}</a>'


def _upload_titles(rt: Rt) -> dict[str, str]:
    return {t: u.title for t, u in rt.state.uploads.items() if u.title}


def listener_fragment(rt: Rt, user_id: str) -> str:
    """History and latest list of one listener."""
    if not user_id:
        return '<p class="muted">Pick a listener.</p>'
    titles = _upload_titles(rt)
    hist = rt.state.history(user_id) or []
    rows = "".join(
        f'<tr class="{_e(h.type.value)}"><td>{_e(h.type.value)}</td>'
        f"<td>{_track_link(h.track_id, titles.get(h.track_id, ''))}</td>"
        f"<td>{_e(h.occurred_at.strftime('%H:%M:%S'))}</td></tr>"
        for h in hist
    )
    history = (
        f'<table id="history"><tr><th>did</th><th>track</th><th>at</th></tr>{rows}</table>'
        if hist
        else '<p class="muted">No plays or skips seen.</p>'
    )
    lists = "".join(
        f"<section><h3>{title}</h3>{_list_table(rt.state.latest(user_id, kind), titles, kind)}"
        "</section>"
        for kind, title in ((ListKind.NEW, "Latest list: new for you"), (ListKind.MIX, "Mix"))
    )
    return (
        f'<h2>Listener {_e(user_id)}</h2><div class="cols">{lists}'
        f"<section><h3>Recent plays and skips</h3>{history}</section></div>"
    )


def _list_table(rec: Recommendation | None, titles: dict[str, str], kind: ListKind) -> str:
    """One list as a table (the `new` one keeps the id ``latest``, others ``latest-<kind>``)."""
    tid = "latest" if kind is ListKind.NEW else f"latest-{kind}"
    if rec is None:
        return f'<p class="muted" id="no-{tid}">No {kind} list emitted yet.</p>'
    items = "".join(
        f"<tr><td>{i + 1}</td><td>{_track_link(it.track_id, titles.get(it.track_id, ''))}</td>"
        f'<td class="num">{it.score:.3f}</td><td>{_e(it.reason)}</td>'
        f'<td><span class="sig {signal_of(it.reason)}">{signal_of(it.reason)}</span></td></tr>'
        for i, it in enumerate(rec.items)
    )
    return (
        f'<table id="{tid}" data-source-event="{_e(rec.source_event_id or "")}">'
        "<tr><th>#</th><th>track</th><th>score</th><th>reason</th><th>signal</th></tr>"
        f"{items}</table>"
        f'<p class="muted">{_e(rec.model_version)} · generated '
        f"{_e(rec.generated_at.strftime('%H:%M:%S'))}</p>"
    )


def _hit_row(h: Hit, titles: dict[str, str]) -> str:
    link = _track_link(h.track_id, h.title or titles.get(h.track_id, ""))
    return (
        f"<tr><td>{link}</td><td class=num>{h.score:.3f}</td>"
        f"<td>{_e(', '.join(h.top_tags[:3]))}</td></tr>"
    )


def track_fragment(
    track_id: str, row: TrackRow | None, hits: list[Hit], titles: dict[str, str]
) -> str:
    """Tags and audio neighbours of one track (``titles``: from uploads, when Milvus has none)."""
    if row is None:
        return f"<h2>Track {_e(track_id)}</h2><p class=muted>No audio embedded.</p>"
    tags = "".join(f'<span class="tag">{_e(t)}</span>' for t in row.top_tags)
    neighbours = "".join(_hit_row(h, titles) for h in hits)
    title = row.title or titles.get(track_id, "")
    who = f" by {_e(row.artist_id)}" if row.artist_id else ""
    heard = (
        f'<p class="muted">genre from audio: {_e(row.audio_genre)} '
        f"({row.audio_genre_confidence:.2f})</p>"
        if row.audio_genre
        else ""
    )
    return (
        f'<h2 id="track-title">{_e(title or track_id)}{who}</h2><p>{tags}</p>{heard}'
        f'<table id="neighbours"><tr><th>sounds like</th><th>similarity</th><th>tags</th></tr>'
        f"{neighbours}</table>"
    )


def _secs(v: float | None) -> str:
    return "–" if v is None else f"{v * 1000:.0f} ms" if v < 1 else f"{v:.2f} s"


def pipeline_fragment(p: PipelineStats) -> str:
    """Latency percentiles and throughput of the workers."""
    e2r, u2s = p.latency["event_to_recommendation"], p.latency["upload_to_searchable"]
    rate = "–" if p.events_per_s is None else f"{p.events_per_s:.1f}/s"
    lists = "–" if p.lists_per_s is None else f"{p.lists_per_s:.1f}/s"
    return (
        f"<h3>Pipeline</h3><table>"
        f"<tr><td>event → list</td><td>p50 {_secs(e2r.p50_s)}</td><td>p95 {_secs(e2r.p95_s)}</td>"
        f"<td>n={e2r.count}</td></tr>"
        f"<tr><td>upload → searchable</td><td>p50 {_secs(u2s.p50_s)}</td>"
        f"<td>p95 {_secs(u2s.p95_s)}</td><td>n={u2s.count}</td></tr>"
        f"<tr><td>events</td><td>{rate}</td><td>lists</td><td>{lists}</td></tr>"
        f"</table><p class=muted>{p.reachable}/{p.workers} workers answering</p>"
    )


async def _track_html(rt: Rt, track_id: str) -> str:
    rows = await rt.rows([track_id])
    row = rows.get(track_id)
    hits: list[Hit] = []
    if row is not None:
        where = f"track_id != {json.dumps(track_id)}"
        hits = await rt.search(row.embedding, k=8, where=where)
    return track_fragment(track_id, row, hits, _upload_titles(rt))


async def _pipeline_html(rt: Rt) -> str:
    stats = await asyncio.get_running_loop().run_in_executor(None, rt.deps.panel.scrape)
    return pipeline_fragment(stats)


@router.get("/inspector", response_class=HTMLResponse)
async def page(rt: Rt, user: str = "", track: str = "") -> str:
    """The whole page for ``?user=`` (and ``?track=``)."""
    users = rt.state.listeners()
    if user and user not in users:
        users = sorted([*users, user])
    options = "".join(
        f'<option value="{_e(u)}"{" selected" if u == user else ""}>{_e(u)}</option>' for u in users
    )
    track_html = await _track_html(rt, track) if track else '<p class="muted">Pick a track.</p>'
    html = Template((STATIC / "inspector.html").read_text())
    return html.substitute(
        options=options,
        user=_e(user),
        listener=listener_fragment(rt, user),
        track=track_html,
        pipeline=await _pipeline_html(rt),
    )


@router.get("/inspector/fragments/listener/{user_id}", response_class=HTMLResponse)
def listener_html(user_id: str, rt: Rt) -> str:
    return listener_fragment(rt, user_id)


@router.get("/inspector/fragments/track/{track_id}", response_class=HTMLResponse)
async def track_html(track_id: str, rt: Rt) -> str:
    return await _track_html(rt, track_id)


@router.get("/inspector/fragments/pipeline", response_class=HTMLResponse)
async def pipeline_html(rt: Rt) -> str:
    return await _pipeline_html(rt)


@router.get("/inspector/pipeline")
async def pipeline_json(rt: Rt) -> PipelineStats:
    return await asyncio.get_running_loop().run_in_executor(None, rt.deps.panel.scrape)


@router.get("/users/{user_id}/events", include_in_schema=True, tags=["listeners"])
async def events(user_id: str, request: Request, rt: Rt) -> StreamingResponse:
    """Server-sent events: ``update`` whenever the listener's list or history changes."""
    if not user_id.strip():
        raise ProblemError(422, "empty user id")

    def snapshot() -> str:
        rec = rt.state.latest(user_id)
        mix = rt.state.latest(user_id, ListKind.MIX)  # arrives just after the `new` list
        hist = rt.state.history(user_id) or []
        return json.dumps(
            {
                "source_event_id": rec.source_event_id if rec else None,
                "generated_at": rec.generated_at.isoformat() if rec else None,
                "mix_source_event_id": mix.source_event_id if mix else None,
                "mix_generated_at": mix.generated_at.isoformat() if mix else None,
                "history": len(hist) and hist[0].event_id,
            }
        )

    async def stream() -> AsyncIterator[str]:
        last, version = snapshot(), rt.state.version
        yield f"event: update\ndata: {last}\n\n"
        while not await request.is_disconnected():
            version = await rt.state.wait_changed(version, timeout_s=_CHECK_S)
            now = snapshot()
            if now != last:
                last = now
                yield f"event: update\ndata: {now}\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream")
