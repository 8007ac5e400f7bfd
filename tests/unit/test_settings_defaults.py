"""No constructor default that differs from Settings: a class built without an argument
must behave as the settings' default would make it (issue: InputLimits, TrackStore,
UserEncoderClient, Catalog, VectorCache, FetchPolicy and UserModel had drifted copies)."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

import pytest

from infra.triton_proc import TritonProcess
from schemas.event_time import InputLimits
from schemas.settings import Settings
from serving.milvus_store import TrackStore
from serving.user_encoder_client import UserEncoderClient
from serving.user_model import UserModel
from streams.candidates import VectorCache
from streams.catalog import Catalog
from streams.fetch import FetchPolicy

S = Settings()

CASES: list[tuple[Callable[..., Any], str, Any]] = [
    (TrackStore.__init__, "timeout_s", S.timeout_s),
    (TrackStore.__init__, "index_type", S.milvus_index),
    (TrackStore.__init__, "hnsw_m", S.milvus_hnsw_m),
    (TrackStore.__init__, "hnsw_ef_construction", S.milvus_hnsw_ef_construction),
    (TrackStore.__init__, "hnsw_ef", S.milvus_hnsw_ef),
    (TrackStore.__init__, "consistency", S.milvus_consistency),
    (UserEncoderClient.__init__, "model_name", S.user_model_name),
    (UserEncoderClient.__init__, "timeout_s", S.user_model_timeout_s),
    (UserModel.__init__, "top_n", S.user_model_top_n),
    (Catalog.__init__, "ttl_s", S.catalog_lists_ttl_s),
    (VectorCache.__init__, "capacity", S.vector_cache_size),
    (TritonProcess.__init__, "model_name", S.triton_model),
    (TritonProcess.__init__, "user_model_name", S.user_model_name),
    (TritonProcess.__init__, "user_top_n", S.user_model_top_n),
]


@pytest.mark.parametrize(("init", "param", "expected"), CASES, ids=lambda v: str(v)[:40])
def test_a_constructor_default_is_absent_or_the_settings_default(
    init: Callable[..., Any], param: str, expected: Any
) -> None:
    default = inspect.signature(init).parameters[param].default
    assert default is inspect.Parameter.empty or default == expected, (
        f"{init.__qualname__}({param}={default!r}) but Settings says {expected!r}"
    )


def test_dataclass_and_model_defaults_are_the_settings_defaults() -> None:
    assert InputLimits() == InputLimits.from_settings(S)
    fields = {f.name: f.default for f in dataclasses.fields(FetchPolicy)}
    assert fields["deadline_s"] == S.audio_fetch_deadline_s
    assert fields["max_bytes"] == S.audio_max_bytes
    assert fields["max_redirects"] == S.audio_max_redirects
