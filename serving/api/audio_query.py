"""An uploaded audio file -> one track vector and genre, with the same decoding rules as uploads
(``models.audio_input.decode_file``: mono, resampled, the first ``max_audio_s`` seconds) and
the same encoder (Triton). Size and duration are capped before anything is decoded."""

from __future__ import annotations

import asyncio
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from starlette.datastructures import UploadFile  # FastAPI's is a subclass

from models.audio_input import AudioRejected, AudioUnavailable, decode_file, pool_track
from models.genre import GenrePrediction, track_genre
from serving.api.problems import ProblemError
from serving.api.runtime import Runtime
from serving.triton_client import TritonError

log = logging.getLogger(__name__)

_CHUNK = 256 * 1024


@dataclass(frozen=True, kw_only=True)
class QueryAudio:
    """An uploaded file as the store sees a track: unit vector, top tags, predicted genre."""

    vector: np.ndarray
    top_tags: tuple[str, ...]
    genre: GenrePrediction


async def save_upload(file: UploadFile, *, max_bytes: int, folder: Path) -> Path:
    """Copy the upload to ``folder``, refusing (413) more than ``max_bytes``."""
    suffix = Path(file.filename or "").suffix[:10] or ".audio"
    path = folder / f"upload{suffix}"
    size = 0
    with path.open("wb") as out:
        while chunk := await file.read(_CHUNK):
            size += len(chunk)
            if size > max_bytes:
                raise ProblemError(413, f"audio file larger than {max_bytes} bytes")
            out.write(chunk)
    if size == 0:
        raise ProblemError(422, "empty audio file")
    return path


def audio_seconds(path: Path) -> float:
    """Duration from the file header (no decoding); AudioRejected if unreadable."""
    import soundfile as sf

    try:
        return float(sf.info(str(path)).duration)
    except Exception:  # not a libsndfile format: ask librosa's fallback readers
        try:
            import librosa

            return float(librosa.get_duration(path=str(path)))
        except Exception as exc:
            raise AudioRejected("undecodable", f"cannot read {path.name}: {exc}") from exc


def _prepare(path: Path, rt: Runtime) -> np.ndarray:
    s = rt.settings
    seconds = audio_seconds(path)
    if seconds > s.api_max_upload_s:
        limit = s.api_max_upload_s
        raise ProblemError(413, f"audio is {seconds:.0f} s long; the limit is {limit:.0f} s")
    audio = decode_file(path, spec=rt.deps.card.frontend, max_seconds=s.max_audio_s)
    return audio.patches


async def embed_upload(file: UploadFile, rt: Runtime) -> QueryAudio:
    """The uploaded file's unit vector, top tags and genre, pooled as ingest pools a track
    (problem 413/422/503 on failure)."""
    encoder = rt.require_encoder()
    loop = asyncio.get_running_loop()
    with tempfile.TemporaryDirectory(prefix="resonate-api-") as tmp:
        path = await save_upload(file, max_bytes=rt.settings.api_max_upload_bytes, folder=Path(tmp))
        try:
            patches = await loop.run_in_executor(None, _prepare, path, rt)
        except AudioRejected as exc:
            raise ProblemError(422, str(exc)) from exc
        except AudioUnavailable as exc:  # a local I/O failure on the server's side
            raise ProblemError(503, str(exc)) from exc
    try:
        emb, tags = await encoder.embed(patches)
    except TritonError as exc:
        raise ProblemError(503, f"audio encoder failed: {exc}") from exc
    names = rt.deps.card.tag_names
    vec, top = pool_track(emb, tags, names)
    return QueryAudio(vector=vec, top_tags=top, genre=track_genre(tags, names))
