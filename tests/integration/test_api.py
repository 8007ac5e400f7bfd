"""The query API and the inspector page on the real embedded stack (Apache Kafka, Faust, Triton,
Milvus Lite and the API process that `EmbeddedStack` starts), spoken to over HTTP as a
consumer app or a browser would.

One stack for the module; a small catalog of real clips (three styles, two clips per
track, the artist being the clip's package); waits follow the API's own live stream
(``/users/{id}/events``) rather than sleeping.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from infra.demo import Bus
from infra.stack import EmbeddedStack
from serving.milvus_schema import TrackRow
from serving.milvus_store import TrackStore
from serving.track_filter import TrackFilter
from tests.integration.events import clip_uri, play, upload, wait_stored

KEY = "test-key"
TRACKS = {  # track -> release date; two clips each
    "fretsonfire-songs-sectoid__Metal_madness": "2004-05-01",
    "fretsonfire-songs-sectoid__Feelings": "2004-06-01",
    "asc-music__frontiers": "2012-01-01",
    "asc-music__machine_wars": "2012-02-01",
    "singularity-music__Nebula": "2020-03-01",
    "singularity-music__Awakening": "2020-04-01",
}
METAL = "fretsonfire-songs-sectoid__Metal_madness"
ROCK_ARTIST = "fretsonfire-songs-sectoid"
MAX_UPLOAD = 2 * 1024 * 1024


def title_of(track: str) -> str:
    return track.split("__")[1].replace("_", " ")


@pytest.fixture(scope="module")
def stack_options(data_dir: Path) -> dict[str, Any]:
    return {
        "audio_roots": [(data_dir / "audio").resolve()],
        "workers": 1,
        "api_port": 0,
        "api_key": KEY,
        "api_max_upload_bytes": MAX_UPLOAD,
        "max_per_artist": 10,  # three artists only: full lists
    }


@pytest.fixture(scope="module")
def api(stack: EmbeddedStack) -> str:
    assert stack.api_url, "the embedded stack did not start the API"
    return stack.api_url


@pytest.fixture(scope="module")
def catalog(stack: EmbeddedStack, bus: Bus, data_dir: Path) -> dict[str, dict[str, str]]:
    """Upload the clips of TRACKS with title, artist, genre, release date; wait for Milvus."""
    with (data_dir / "audio" / "manifest.csv").open() as f:
        clips = {c["clip_id"]: c for c in csv.DictReader(f) if c["track_id"] in TRACKS}
    assert len(clips) == 2 * len(TRACKS)
    for cid, c in clips.items():
        upload(
            bus,
            stack.settings,
            cid,
            clip_uri(data_dir, cid),
            title=title_of(c["track_id"]),
            artist_id=c["package"],
            genre=c["style"],
            release_date=TRACKS[c["track_id"]],
        )
    bus.flush()
    rows = wait_stored(stack.settings, list(clips))
    assert len(rows) == len(clips), f"stored {sorted(rows)}"
    return clips


def problem(resp: requests.Response, status: int) -> dict[str, Any]:
    """The problem+json body of an error response with ``status``."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = resp.json()
    assert body["status"] == status and body["title"] and body["detail"]
    return body


def wait_list(
    api: str, user: str, event_id: str, timeout_s: float = 60, kind: str = "new"
) -> dict[str, Any]:
    """The listener's list of ``kind`` once the API holds the one ``event_id`` triggered
    (via SSE)."""
    deadline = time.monotonic() + timeout_s
    field = "source_event_id" if kind == "new" else f"{kind}_source_event_id"
    with requests.get(f"{api}/users/{user}/events", stream=True, timeout=(5, timeout_s)) as r:
        for line in r.iter_lines(decode_unicode=True):
            if line.startswith("data:") and json.loads(line[5:])[field] == event_id:
                break
            assert time.monotonic() < deadline, f"no list for {event_id} in {timeout_s} s"
    resp = requests.get(f"{api}/users/{user}/recommendations?kind={kind}", timeout=10)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    assert body["source_event_id"] == event_id
    return body


def new_user() -> str:
    return f"u-{uuid.uuid4().hex[:8]}"


# --- health, docs, errors --------------------------------------------------------------


def test_health_docs_and_unknown_routes(api: str) -> None:
    assert requests.get(f"{api}/health/live", timeout=5).json() == {"status": "ok"}
    ready = requests.get(f"{api}/health/ready", timeout=5)
    assert ready.status_code == 200
    assert ready.json() == {
        "ready": True,
        "components": {"kafka_feed": True, "milvus": True, "triton": True},
    }
    assert "swagger" in requests.get(f"{api}/docs", timeout=5).text.lower()
    paths = requests.get(f"{api}/openapi.json", timeout=5).json()["paths"]
    for p in (
        "/users/{user_id}/recommendations",
        "/tracks/{track_id}",
        "/tracks/{track_id}/similar",
        "/search/audio",
        "/users/{user_id}/seed",
    ):
        assert p in paths
    problem(requests.get(f"{api}/no/such/route", timeout=5), 404)


# --- listeners -------------------------------------------------------------------------


def test_latest_list_of_a_listener_with_k(
    stack: EmbeddedStack, bus: Bus, api: str, catalog: dict
) -> None:
    s, user = stack.settings, new_user()
    body = problem(requests.get(f"{api}/users/{user}/recommendations", timeout=5), 404)
    assert user in body["detail"]
    t0 = datetime.now(UTC)
    play(bus, s, user, f"{METAL}__0", "play", t0)
    eid = play(bus, s, user, "singularity-music__Nebula__0", "skip", t0 + timedelta(seconds=1))
    full = wait_list(api, user, eid)
    ids = [i["track_id"] for i in full["items"]]
    assert len(ids) == s.top_k and f"{METAL}__1" in ids
    assert f"{METAL}__0" not in ids and "singularity-music__Nebula__0" not in ids
    top2 = requests.get(f"{api}/users/{user}/recommendations?k=2", timeout=5).json()
    assert top2["items"] == full["items"][:2]
    problem(requests.get(f"{api}/users/{user}/recommendations?k=0", timeout=5), 422)
    hist = requests.get(f"{api}/users/{user}/history", timeout=5).json()["items"]
    assert [(h["type"], h["track_id"]) for h in hist] == [
        ("skip", "singularity-music__Nebula__0"),
        ("play", f"{METAL}__0"),
    ]
    assert user in requests.get(f"{api}/users", timeout=5).json()["user_ids"]


def test_a_mix_list_brings_a_favourite_back_after_the_cool_down(
    stack: EmbeddedStack, bus: Bus, api: str, catalog: dict
) -> None:
    s, user, t0 = stack.settings, new_user(), datetime.now(UTC)
    fav = f"{METAL}__0"
    others = ["singularity-music__Nebula__0", f"{METAL}__1", "singularity-music__Aberrations__0"]
    for n, track in enumerate([fav, fav, *others]):  # then 3 others: past the cool-down
        eid = play(bus, s, user, track, "play", t0 + timedelta(seconds=n))
    new = wait_list(api, user, eid)
    mix = wait_list(api, user, eid, kind="mix")
    assert new["kind"] == "new" and mix["kind"] == "mix"
    assert fav not in [i["track_id"] for i in new["items"]]
    assert {"track_id": fav, "reason": "back in your rotation"}.items() <= mix["items"][0].items()
    problem(requests.get(f"{api}/users/{user}/recommendations?kind=old", timeout=5), 422)


# --- tracks ----------------------------------------------------------------------------


def test_track_metadata_tags_and_audio(
    stack: EmbeddedStack, bus: Bus, api: str, catalog: dict
) -> None:
    t = requests.get(f"{api}/tracks/{METAL}__0", timeout=5).json()
    assert t["has_audio"] is True
    assert (t["title"], t["artist_id"], t["genre"], t["release_date"]) == (
        "Metal madness",
        ROCK_ARTIST,
        "rock",
        "2004-05-01",
    )
    assert {"rock", "metal", "heavy metal", "hard rock"} & set(t["top_tags"])
    problem(requests.get(f"{api}/tracks/no-such-track", timeout=5), 404)
    # A track known only from plays (no upload, no audio) is known, without audio.
    ghost, user = f"ghost-{uuid.uuid4().hex[:6]}", new_user()
    eid = play(bus, stack.settings, user, ghost, "play", datetime.now(UTC))
    wait_list(api, user, eid)
    g = requests.get(f"{api}/tracks/{ghost}", timeout=5).json()
    assert g["has_audio"] is False and g["top_tags"] == []
    problem(requests.get(f"{api}/tracks/{ghost}/similar", timeout=5), 409)


def test_similar_tracks_with_filters(api: str, catalog: dict) -> None:
    def similar(**params: Any) -> list[dict[str, Any]]:
        r = requests.get(f"{api}/tracks/{METAL}__0/similar", params=params, timeout=10)
        assert r.status_code == 200, r.text
        items: list[dict[str, Any]] = r.json()["items"]
        return items

    plain = similar(k=5)
    assert len(plain) == 5 and plain[0]["track_id"] == f"{METAL}__1"
    assert plain[0]["score"] >= plain[-1]["score"]
    assert f"{METAL}__0" not in [h["track_id"] for h in similar(k=11)]
    no_rock_artist = similar(k=20, exclude_artist=ROCK_ARTIST)
    assert no_rock_artist and all(h["artist_id"] != ROCK_ARTIST for h in no_rock_artist)
    assert all(h["genre"] == "soundtrack" for h in similar(k=20, genre="soundtrack"))
    recent = similar(k=20, released_after="2012-01-15")
    assert {h["track_id"].rsplit("__", 1)[0] for h in recent} == {
        "asc-music__machine_wars",
        "singularity-music__Nebula",
        "singularity-music__Awakening",
    }
    window = similar(k=20, released_after="2004-01-01", released_before="2012-01-01")
    assert len(window) == 5  # Metal madness' other clip, Feelings and frontiers
    problem(requests.get(f"{api}/tracks/{METAL}__0/similar?k=0", timeout=5), 422)
    problem(requests.get(f"{api}/tracks/{METAL}__0/similar?released_after=x", timeout=5), 422)


def test_filter_expressions_quote_values() -> None:
    f = TrackFilter(exclude_ids=('a"b',), genre="rock", released_before="2020-01-01")
    assert f.expression() == (
        'track_id not in ["a\\"b"] and genre == "rock" and release_date != "" '
        'and release_date <= "2020-01-01"'
    )
    assert TrackFilter().expression() == ""


# --- audio search ----------------------------------------------------------------------


def test_search_by_audio_file(api: str, catalog: dict, data_dir: Path, tmp_path: Path) -> None:
    clip = data_dir / "audio" / f"{METAL}__1.ogg"
    with clip.open("rb") as f:
        r = requests.post(f"{api}/search/audio?k=3", files={"file": (clip.name, f)}, timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["items"][0]["track_id"] == f"{METAL}__1"
    assert body["items"][0]["score"] > 0.999  # same decoding and encoder as the upload
    assert body["items"][1]["track_id"] == f"{METAL}__0"
    stored = requests.get(f"{api}/tracks/{METAL}__1", timeout=5).json()
    assert body["top_tags"] == stored["top_tags"]
    # The file's genre is the one ingest stored for the same audio: same tags, same rule.
    label = body["genre"]["label"]
    assert label in {"rock", "metal"} and label == stored["audio_genre"]["label"]
    assert abs(body["genre"]["confidence"] - stored["audio_genre"]["confidence"]) < 1e-3
    same = body["same_genre"]
    assert same[0]["track_id"] == f"{METAL}__1"
    assert all(t["audio_genre"]["label"] == label for t in same)
    with clip.open("rb") as f:
        later = requests.post(
            f"{api}/search/audio?k=3&released_after=2010-01-01",
            files={"file": (clip.name, f)},
            timeout=60,
        ).json()
    assert later["genre"]["label"] == label
    assert not any(t["track_id"].startswith(ROCK_ARTIST) for t in later["same_genre"])
    near = requests.get(f"{api}/tracks/{METAL}__0/similar?audio_genre={label}", timeout=10)
    assert near.status_code == 200, near.text
    assert all(t["audio_genre"]["label"] == label for t in near.json()["items"])
    problem(requests.get(f"{api}/tracks/{METAL}__0/similar?audio_genre=Metal", timeout=5), 422)
    big = tmp_path / "big.wav"
    big.write_bytes(b"\0" * (MAX_UPLOAD + 1))
    with big.open("rb") as f:
        problem(requests.post(f"{api}/search/audio", files={"file": f}, timeout=30), 413)
    junk = tmp_path / "junk.ogg"
    junk.write_bytes(b"not audio at all" * 100)
    with junk.open("rb") as f:
        problem(requests.post(f"{api}/search/audio", files={"file": f}, timeout=30), 422)


# --- seeding ---------------------------------------------------------------------------


def test_seed_needs_the_key_and_shapes_the_next_list(api: str, catalog: dict) -> None:
    user = new_user()
    seed = {"track_ids": [f"{METAL}__0", "asc-music__frontiers__0"]}
    problem(requests.post(f"{api}/users/{user}/seed", json=seed, timeout=10), 401)
    bad_key = {"X-API-Key": "wrong"}
    problem(requests.post(f"{api}/users/{user}/seed", json=seed, headers=bad_key, timeout=10), 401)
    key = {"X-API-Key": KEY}
    unknown = {"track_ids": ["no-such-track"]}
    body = problem(
        requests.post(f"{api}/users/{user}/seed", json=unknown, headers=key, timeout=10), 422
    )
    assert "no-such-track" in body["detail"]
    r = requests.post(f"{api}/users/{user}/seed", json=seed, headers=key, timeout=10)
    assert r.status_code == 202, r.text
    out = r.json()
    assert out["track_ids"] == seed["track_ids"] and len(out["event_ids"]) == 2
    items = [i["track_id"] for i in wait_list(api, user, out["event_ids"][-1])["items"]]
    assert not set(seed["track_ids"]) & set(items)
    assert {f"{METAL}__1", "asc-music__frontiers__1"} <= set(items)
    hist = requests.get(f"{api}/users/{user}/history", timeout=5).json()["items"]
    assert [h["type"] for h in hist] == ["like", "like"]


def test_seed_from_a_file(api: str, catalog: dict, data_dir: Path) -> None:
    user, clip = new_user(), data_dir / "audio" / "asc-music__machine_wars__0.ogg"
    with clip.open("rb") as f:
        r = requests.post(
            f"{api}/users/{user}/seed",
            files={"file": (clip.name, f)},
            headers={"X-API-Key": KEY},
            timeout=60,
        )
    assert r.status_code == 202, r.text
    out = r.json()
    assert out["source"] == "audio" and out["track_ids"][0] == "asc-music__machine_wars__0"
    rec = wait_list(api, user, out["event_ids"][-1])
    assert rec["items"] and not set(out["track_ids"]) & {i["track_id"] for i in rec["items"]}


# --- metrics and titles ----------------------------------------------------------------


def test_request_metrics_and_pipeline_panel(api: str, catalog: dict) -> None:
    requests.get(f"{api}/users/nobody-{uuid.uuid4().hex}/recommendations", timeout=5)
    text = requests.get(f"{api}/metrics", timeout=5).text
    assert (
        'resonate_api_requests_total{method="GET",route="/users/{user_id}/recommendations",'
        'status="404"}' in text
    )
    assert "resonate_api_request_seconds_bucket" in text
    panel = requests.get(f"{api}/inspector/pipeline", timeout=10).json()
    assert panel["workers"] == panel["reachable"] == 1
    assert panel["events"]["track-uploads"] >= 2 * len(TRACKS)
    assert panel["latency"]["upload_to_searchable"]["count"] >= 2 * len(TRACKS)
    assert panel["latency"]["upload_to_searchable"]["p50_s"] > 0


def test_title_is_stored_with_the_track(stack: EmbeddedStack) -> None:
    s = stack.settings
    with TrackStore(uri=s.milvus_uri, collection=f"titles_{uuid.uuid4().hex[:6]}", dim=4) as st:
        st.ensure_collection()
        vec = np.asarray([1, 0, 0, 0], dtype=np.float32)
        st.upsert(
            [TrackRow("t1", vec, "artist-1", "rock", "", 0, ("rock",), "v1", title="Song One")]
        )
        assert st.get(["t1"])["t1"].title == "Song One"
        assert [h.title for h in st.search(vec, k=1)] == ["Song One"]
        assert [h.title for h in st.search_where(vec, k=1, where='genre == "rock"')] == ["Song One"]
        long = "é" * 400  # 800 bytes: cut to the 512 the field holds, on a character
        st.upsert([TrackRow("t2", vec, "", "", "", 0, (), "v1", title=long)])
        assert st.get(["t2"])["t2"].title == "é" * 256
        st.drop()


# --- the inspector page in a real browser ----------------------------------------------


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """Headless Debian Chromium through chromedriver; missing ones FAIL the test."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.fail("chromium/chromedriver missing: run infra/setup.sh (installs them as root)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1500,1000",
        f"--user-data-dir={tmp_path / 'chromium'}",
    ):
        opts.add_argument(flag)
    b = webdriver.Chrome(service=Service(executable_path=driver), options=opts)
    yield b
    b.quit()


def test_inspector_shows_a_new_list_live(
    stack: EmbeddedStack, bus: Bus, api: str, catalog: dict, browser: Any, tmp_path: Path
) -> None:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    s, user = stack.settings, "listener-demo"
    t0 = datetime.now(UTC)
    play(bus, s, user, "asc-music__frontiers__0", "play", t0)
    first = play(bus, s, user, "singularity-music__Awakening__1", "skip", t0 + timedelta(seconds=1))
    wait_list(api, user, first)
    browser.get(f"{api}/inspector?user={user}")
    # Fragments are swapped live, so elements go stale: every look is a retried wait.
    wait = WebDriverWait(browser, 60, ignored_exceptions=[StaleElementReferenceException])

    def attr(element_id: str, name: str) -> str:
        return str(browser.find_element(By.ID, element_id).get_attribute(name))

    wait.until(lambda _: attr("latest", "data-source-event") == first)
    wait.until(lambda _: "on" in attr("live", "class"))
    # An event played through Kafka now: the page must show its list without a reload.
    eid = play(bus, s, user, f"{METAL}__0", "play", t0 + timedelta(seconds=2))
    wait.until(lambda _: attr("latest", "data-source-event") == eid)
    listed = requests.get(f"{api}/users/{user}/recommendations", timeout=5).json()["items"]
    assert len(listed) >= 5  # 12 tracks, 3 heard
    latest = wait.until(lambda b: b.find_element(By.ID, "latest").text)
    assert latest.count("\n") == len(listed)  # a header row and one row per item
    # The other clip of the track just played: by its artist, so the artist signal names it.
    assert any(
        "Metal madness" in line and "more by" in line and "artist" in line
        for line in latest.splitlines()
    ), latest
    history = wait.until(lambda b: b.find_element(By.ID, "history").text)
    assert "skip" in history and "Awakening" in history
    # Pick a track: its tags and neighbours appear.
    browser.find_element(By.CSS_SELECTOR, f'#history a[data-track="{METAL}__0"]').click()
    wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#neighbours tr"))
    assert "Metal madness" in browser.find_element(By.ID, "track-title").text
    assert f"{METAL}__1" in attr("neighbours", "innerHTML")
    wait.until(lambda b: "1/1 workers" in b.find_element(By.ID, "pipeline").text)
    shot = Path(os.environ.get("RESONATE_SCREENSHOT", tmp_path / "inspector.png"))
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
