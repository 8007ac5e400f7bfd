"""Limits the store imposes on event fields, in one place: the event contract validates
against them (schemas/events.py) and the Milvus schema declares them
(serving/milvus_schema.py), so what validates can always be stored.

Milvus VARCHAR ``max_length`` counts UTF-8 bytes, so the limits here are bytes too.

Track ids are stored under a reversible key encoding (:func:`track_key`): Milvus Lite 2.5
fails every upsert and delete of a primary key holding an apostrophe (it quotes keys into
its own SQL unescaped), so ``'`` is stored as ``%27`` and ``%`` as ``%25``. The encoded key
is what must fit the VARCHAR limit.
"""

from __future__ import annotations

# VARCHAR limits of the stored track fields, in bytes of UTF-8 (track_id: of its key).
VARCHAR_MAX_BYTES = {
    "track_id": 128,
    "artist_id": 128,
    "genre": 128,
    "release_date": 32,
    "top_tags": 1024,
    "model_version": 128,
    "audio_genre": 64,  # a label of models/genre.py's table, predicted from the audio
}
TITLE_MAX_BYTES = 512
# Not stored in Milvus; bounded so one event cannot carry an arbitrarily long URI.
AUDIO_URI_MAX_CHARS = 2048


def track_key(track_id: str) -> str:
    """The primary key a track id is stored under (``%`` -> ``%25``, ``'`` -> ``%27``)."""
    return track_id.replace("%", "%25").replace("'", "%27")


def track_id_of(key: str) -> str:
    """The track id a stored primary key stands for (inverse of :func:`track_key`)."""
    return key.replace("%27", "'").replace("%25", "%")


def has_control_chars(value: str) -> bool:
    """Whether ``value`` holds a C0 control character or DEL: no Milvus expression can
    match such a value on Milvus Lite (serving/milvus_expr.py), so ids refuse them."""
    return any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value)
