"""Dead letters and retries: the headers, the backoff, and the upload path's failure rules
(outages waited out, a bad item isolated, attempts used up) with stand-in clients."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from models.convert_musicnn import MUSICNN_CARD
from schemas.events import TrackUpload
from schemas.settings import Settings
from streams import ingest
from streams.audio import AudioInput, AudioRejected, AudioUnavailable
from streams.clients import Deps
from streams.deadletter import (
    ATTEMPTS,
    NOT_BEFORE,
    REASON,
    SOURCE_OFFSET,
    SOURCE_TOPIC,
    Failed,
    Source,
    backoff_s,
    failure_headers,
    headers_dict,
)
from streams.ingest import Uploader, UploadItem
from streams.metrics import Metrics


def _source(
    offset: int = 7, headers: tuple[tuple[str, bytes], ...] = (), key: bytes = b"t1"
) -> Source:
    return Source(
        topic="track-uploads", partition=2, offset=offset, key=key, value=b"{}", headers=headers
    )


def test_failure_headers_keep_the_origin_through_retries_and_the_producers_headers() -> None:
    first = failure_headers(
        _source(headers=(("trace", b"abc"),)),
        reason="audio-unavailable",
        error="AudioUnavailable",
        detail="refused",
        attempts=1,
        now_ms=1000,
        not_before_ms=3000,
    )
    # The retried message comes back from the retry topic at another offset...
    retried = Source(
        topic="track-uploads.retry",
        partition=0,
        offset=99,
        key=b"t1",
        value=b"{}",
        headers=tuple(first),
    )
    assert retried.attempts == 1 and retried.not_before_ms == 3000
    assert retried.origin == ("track-uploads", 2, 7)
    final = headers_dict(
        failure_headers(
            retried, reason="audio-unavailable", error="X", detail="d", attempts=2, now_ms=5000
        )
    )
    # ...but its dead letter names where it first came in, and ours are not repeated.
    assert final[SOURCE_TOPIC] == "track-uploads" and final[SOURCE_OFFSET] == "7"
    assert final[ATTEMPTS] == "2" and final[REASON] == "audio-unavailable"
    assert final["trace"] == "abc" and NOT_BEFORE not in final
    names = [
        k
        for k, _ in failure_headers(
            retried, reason="r", error="e", detail="d", attempts=2, now_ms=1
        )
    ]
    assert len(names) == len(set(names))


def test_backoff_doubles_up_to_its_cap() -> None:
    assert [backoff_s(a, base_s=1.0, cap_s=5.0) for a in range(1, 6)] == [1, 2, 4, 5, 5]


class Letters:
    """Records what the uploader sets aside (the real DeadLetters needs a broker)."""

    def __init__(self) -> None:
        self.dead: list[Failed] = []
        self.retried: list[tuple[Source, str, int]] = []

    async def dead_letter_many(self, failed: list[Failed], *, role: str) -> None:
        self.dead.extend(failed)

    async def retry_later(
        self, source: Source, *, role: str, reason: str, error: BaseException, attempts: int
    ) -> None:
        self.retried.append((source, reason, attempts))


class Encoder:
    """Triton stand-in: down for ``down`` calls, and fails any batch holding a poison row."""

    def __init__(self, *, down: int = 0) -> None:
        self.down = down  # failed calls to come
        self.probes_down = down  # and health probes that say so
        self.calls = 0

    async def ready(self) -> bool:
        if self.probes_down:
            self.probes_down -= 1
            return False
        return True

    async def embed(self, patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.calls += 1
        if self.down:
            self.down -= 1
            raise OSError("connection refused")
        if (patches < 0).any():
            raise RuntimeError("model failed on this input")
        n = patches.shape[0]
        return np.ones((n, 200), "float32"), np.zeros((n, 50), "float32")


class Store:
    def __init__(self) -> None:
        self.ids: list[str] = []

    def upsert(self, rows: Any) -> int:
        self.ids += [r.track_id for r in rows]
        return len(rows)

    def exists(self) -> bool:
        return True


class FakeClients:
    def __init__(self, encoder: Encoder) -> None:
        self.enc = encoder
        self.st = Store()
        self.decode_pool = ThreadPoolExecutor(1)
        self.milvus_pool = ThreadPoolExecutor(1)

    async def encoder(self) -> Encoder:
        return self.enc

    async def store(self) -> Store:
        return self.st


def _item(track: str, attempts: int = 0) -> UploadItem:
    ev = TrackUpload(
        event_id=f"e-{track}",
        track_id=track,
        audio_uri=f"file:///audio/{track}.wav",
        uploaded_at=datetime(2026, 11, 30, tzinfo=UTC),
    )
    headers = ((ATTEMPTS, str(attempts).encode()),) if attempts else ()
    return UploadItem(ev, _source(headers=headers, key=track.encode()))


@pytest.fixture()
def fake_audio(monkeypatch: pytest.MonkeyPatch) -> None:
    """Audio by track name: 'gone' -> host down, 'junk' -> rejected, 'poison' -> bad input."""

    def resolve(uri: str, **kw: Any) -> str:
        return uri

    def prepare(loc: str, **kw: Any) -> AudioInput:
        if "gone" in loc:
            raise AudioUnavailable("refused", "audio host refused the connection")
        if "junk" in loc:
            raise AudioRejected("undecodable", "cannot decode junk.wav")
        sign = -1.0 if "poison" in loc else 1.0
        return AudioInput(patches=np.full((2, 4, 3), sign, "float32"), seconds=6.0)

    monkeypatch.setattr(ingest, "resolve_audio_uri", resolve)
    monkeypatch.setattr(ingest, "prepare_audio", prepare)


def _uploader(encoder: Encoder) -> tuple[Uploader, FakeClients, Letters, Metrics, list[Any]]:
    metrics = Metrics()
    deps = Deps(
        settings=Settings(retry_backoff_s=0.01, retry_backoff_max_s=0.02, upload_max_attempts=3),
        card=MUSICNN_CARD,
        metrics=metrics,
        store_factory=lambda: None,  # type: ignore[arg-type,return-value]
        encoder_factory=lambda: None,  # type: ignore[arg-type,return-value]
    )
    clients, letters, published = FakeClients(encoder), Letters(), []

    async def publish(delta: Any) -> None:
        published.append(delta)

    up = Uploader(deps=deps, clients=clients, letters=letters, publish=publish)  # type: ignore[arg-type]
    return up, clients, letters, metrics, published


async def test_an_outage_is_waited_out_and_every_upload_stored(fake_audio: None) -> None:
    up, clients, letters, metrics, published = _uploader(Encoder(down=3))
    await up.handle([_item("a"), _item("b")])
    assert sorted(clients.st.ids) == ["a", "b"]
    assert not letters.dead and not letters.retried  # an outage is nobody's item's fault
    assert clients.enc.calls == 4  # three failed tries, then one batch call
    assert set(published[0].uploads) == {"a", "b"}
    assert (
        metrics.registry.get_sample_value("resonate_dependency_up", {"dependency": "triton"}) == 1
    )


async def test_one_bad_item_is_set_aside_and_its_batch_goes_on(fake_audio: None) -> None:
    up, clients, letters, _, published = _uploader(Encoder())
    await up.handle([_item("a"), _item("poison"), _item("junk"), _item("gone"), _item("b")])
    assert sorted(clients.st.ids) == ["a", "b"]
    assert [f.reason for f in letters.dead] == ["audio-undecodable"]  # junk: for good
    retried = {s.key: (reason, n) for s, reason, n in letters.retried}
    assert len(letters.retried) == 2  # gone (its host) and poison (failed alone): maybe later
    assert retried == {b"gone": ("audio-refused", 1), b"poison": ("embed-or-store", 1)}
    assert set(published[0].uploads) == {"a", "b"}


async def test_attempts_used_up_end_in_the_dead_letter_topic(fake_audio: None) -> None:
    up, clients, letters, metrics, _ = _uploader(Encoder())
    await up.handle([_item("gone", attempts=2)])  # the third attempt of upload_max_attempts=3
    assert not letters.retried and [f.attempts for f in letters.dead] == [3]
    assert letters.dead[0].reason == "audio-refused"
    got = metrics.registry.get_sample_value
    assert got("resonate_events_total", {"topic": "track-uploads", "outcome": "dead-lettered"}) == 1
