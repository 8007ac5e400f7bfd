"""The Faust codec and the upload audio checks (no services)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import faust
import numpy as np
import pytest

from models.spec import FrontEndSpec
from schemas.events import Interaction
from streams.audio import (
    AudioRejected,
    FetchPolicy,
    pool_track,
    prepare_audio,
    resolve_audio_uri,
)
from streams.codec import InvalidEvent, PydanticSchema

APP = faust.App("codec-test", broker="memory://")


def _msg(value: bytes, key: bytes = b"u1", headers: Any = ()) -> Any:
    return SimpleNamespace(value=value, key=key, headers=headers)


def test_schema_decodes_valid_and_flags_invalid_without_raising() -> None:
    schema = PydanticSchema(Interaction, max_bytes=65536)
    good = (
        b'{"event_id":"e","type":"skip","user_id":"u1","track_id":"t",'
        b'"occurred_at":"2026-11-22T10:00:00Z"}'
    )
    ev = schema.loads_value(APP, _msg(good))
    assert isinstance(ev, Interaction) and ev.type.value == "skip"
    bad = schema.loads_value(APP, _msg(b'{"event_id":"e","type":"pause"}'))
    assert isinstance(bad, InvalidEvent) and "type" in bad.error
    assert isinstance(schema.loads_value(APP, _msg(b"\xff not json")), InvalidEvent)


def test_records_over_the_declared_size_are_too_large_and_never_parsed() -> None:
    """Just under, at and over the limit, counting key, value and headers alike."""
    limit = 2048
    schema = PydanticSchema(Interaction, max_bytes=limit)
    body = (
        b'{"event_id":"e","type":"play","user_id":"u1","track_id":"t",'
        b'"occurred_at":"2026-11-22T10:00:00Z"}'
    )
    pad = limit - len(body) - len(b"u1")
    at = schema.loads_value(APP, _msg(body, headers=[("h", b"x" * (pad - 1))]))
    assert isinstance(at, Interaction)  # exactly at the limit: accepted
    for over in (
        _msg(body, headers=[("h", b"x" * pad)]),  # one byte over, in a header
        _msg(body, key=b"k" * limit),  # a huge key
        _msg(body, headers=[(f"h{i}", b"") for i in range(1000)]),  # many headers
        _msg(b"{" * (limit + 1)),  # a huge (and invalid) value: never parsed
    ):
        bad = schema.loads_value(APP, over)
        assert isinstance(bad, InvalidEvent) and bad.reason == "too-large", bad
        assert bad.raw == b"" and f"{limit} byte limit" in bad.error


def test_schema_dumps_models_as_json() -> None:
    schema = PydanticSchema(Interaction, max_bytes=65536)
    ev = Interaction.model_validate_json(
        b'{"event_id":"e","type":"play","user_id":"u","track_id":"t",'
        b'"occurred_at":"2026-11-22T10:00:00Z"}'
    )
    payload, _ = schema.dumps_value(APP, ev, headers=None)
    assert Interaction.model_validate_json(payload) == ev


def test_file_uris_must_stay_inside_allowed_roots(tmp_path: Path) -> None:
    root = tmp_path / "music"
    root.mkdir()
    (root / "a.wav").write_bytes(b"")
    assert resolve_audio_uri((root / "a.wav").as_uri(), policy=FetchPolicy(roots=(root,))) == str(
        root / "a.wav"
    )
    for uri in (
        (root / ".." / "secret.wav").as_uri(),
        "file:///etc/passwd",
        "file://evil-host/x.wav",
        "ftp://example.org/a.wav",
        "http://not-allowed.example/a.wav",
    ):
        with pytest.raises(AudioRejected):
            resolve_audio_uri(uri, policy=FetchPolicy(roots=(root,), hosts=("cdn.example",)))
    cdn = FetchPolicy(hosts=("cdn.example",))
    assert resolve_audio_uri("https://cdn.example/a.wav", policy=cdn)


def test_undecodable_audio_is_rejected(tmp_path: Path) -> None:
    bad = tmp_path / "broken.ogg"
    bad.write_bytes(b"not audio at all")
    with pytest.raises(AudioRejected):
        prepare_audio(str(bad), spec=FrontEndSpec(), max_seconds=5)


def test_pool_track_is_unit_norm_with_top_tags() -> None:
    emb = np.array([[3.0, 0.0], [1.0, 0.0]], dtype=np.float32)
    tags = np.array([[0.1, 0.9, 0.5], [0.3, 0.7, 0.4]], dtype=np.float32)
    vec, top = pool_track(emb, tags, ("a", "b", "c"), top=2)
    assert np.allclose(vec, [1.0, 0.0])
    assert top == ("b", "c")
