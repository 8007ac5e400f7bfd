"""Pure-Python reader for TensorFlow V2 checkpoints (the "tensor bundle" format).

Lets us convert pretrained TF weights at install time without installing TensorFlow.

Layout of a bundle with prefix ``P``:

* ``P.index`` is a LevelDB-style SSTable (no compression). Keys are tensor names; the empty
  key holds a ``BundleHeaderProto`` and every other value is a ``BundleEntryProto``
  (dtype, shape, shard_id, offset, size, crc32c).
* ``P.data-SSSSS-of-NNNNN`` hold the raw little-endian tensor bytes at ``offset``/``size``.

Only what TF actually writes for dense variables is supported (numeric dtypes, unsliced
tensors); anything else raises ``ValueError`` rather than being silently misread.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

_TABLE_MAGIC = 0xDB4775248B80FB57  # LevelDB table magic number (footer's last 8 bytes)
_FOOTER_LEN = 48  # two padded BlockHandles (40 bytes) + magic
_BLOCK_TRAILER_LEN = 5  # 1 byte compression type + 4 bytes masked crc32c

# tensorflow/core/framework/types.proto DataType -> numpy little-endian dtype.
_DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<f4"),  # DT_FLOAT
    2: np.dtype("<f8"),  # DT_DOUBLE
    3: np.dtype("<i4"),  # DT_INT32
    4: np.dtype("u1"),  # DT_UINT8
    5: np.dtype("<i2"),  # DT_INT16
    6: np.dtype("i1"),  # DT_INT8
    8: np.dtype("<c8"),  # DT_COMPLEX64
    9: np.dtype("<i8"),  # DT_INT64
    10: np.dtype("?"),  # DT_BOOL
    17: np.dtype("<u2"),  # DT_UINT16
    18: np.dtype("<c16"),  # DT_COMPLEX128
    19: np.dtype("<f2"),  # DT_HALF
    22: np.dtype("<u4"),  # DT_UINT32
    23: np.dtype("<u8"),  # DT_UINT64
}


@dataclass(frozen=True)
class BundleEntry:
    """One decoded ``BundleEntryProto``: where a tensor's bytes live and what they mean."""

    dtype: int
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c: int


# --- protobuf / varint decoding -------------------------------------------------------------


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Decode a base-128 varint at ``pos``; return (value, next position)."""
    result = 0
    shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _proto_fields(buf: bytes) -> list[tuple[int, int, int | bytes]]:
    """Split a protobuf message into (field number, wire type, value) triples."""
    fields: list[tuple[int, int, int | bytes]] = []
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        value: int | bytes
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value = struct.unpack_from("<Q", buf, pos)[0]
            pos += 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value = buf[pos : pos + length]
            pos += length
        elif wire == 5:
            value = struct.unpack_from("<I", buf, pos)[0]
            pos += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        fields.append((number, wire, value))
    return fields


def _decode_shape(buf: bytes) -> tuple[int, ...]:
    """TensorShapeProto: repeated Dim dim = 2 {int64 size = 1}; unknown_rank = 3."""
    dims: list[int] = []
    for number, _, value in _proto_fields(buf):
        if number == 2:
            assert isinstance(value, bytes)
            size = 0
            for dnum, _, dval in _proto_fields(value):
                if dnum == 1:
                    assert isinstance(dval, int)
                    size = dval - (1 << 64) if dval >= 1 << 63 else dval  # int64 two's complement
            dims.append(size)
        elif number == 3 and value:
            raise ValueError("tensor with unknown rank")
    return tuple(dims)


def _decode_entry(buf: bytes) -> BundleEntry:
    """BundleEntryProto: dtype=1 shape=2 shard_id=3 offset=4 size=5 crc32c=6 slices=7."""
    shape: tuple[int, ...] = ()
    dtype, shard_id, offset, size, crc = 0, 0, 0, 0, 0
    for number, _, value in _proto_fields(buf):
        if number == 1:
            assert isinstance(value, int)
            dtype = value
        elif number == 2:
            assert isinstance(value, bytes)
            shape = _decode_shape(value)
        elif number == 3:
            assert isinstance(value, int)
            shard_id = value
        elif number == 4:
            assert isinstance(value, int)
            offset = value
        elif number == 5:
            assert isinstance(value, int)
            size = value
        elif number == 6:
            assert isinstance(value, int)
            crc = value
        elif number == 7:
            raise ValueError("partitioned (sliced) variables are not supported")
    return BundleEntry(dtype, shape, shard_id, offset, size, crc)


# --- SSTable decoding ---------------------------------------------------------------------


def _block(table: bytes, offset: int, size: int) -> bytes:
    """Return the contents of one table block, checking it is uncompressed."""
    compression = table[offset + size]
    if compression != 0:
        raise ValueError(f"compressed SSTable block (type {compression}) is not supported")
    return table[offset : offset + size]


def _block_entries(block: bytes) -> list[tuple[bytes, bytes]]:
    """Decode a block's prefix-compressed key/value entries (the restart array is skipped)."""
    num_restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    end = len(block) - 4 * (num_restarts + 1)
    entries: list[tuple[bytes, bytes]] = []
    key = b""
    pos = 0
    while pos < end:
        shared, pos = _varint(block, pos)
        non_shared, pos = _varint(block, pos)
        value_len, pos = _varint(block, pos)
        # Keys share a prefix with the previous key; restart points just have shared == 0.
        key = key[:shared] + block[pos : pos + non_shared]
        pos += non_shared
        entries.append((key, block[pos : pos + value_len]))
        pos += value_len
    return entries


def _block_handle(buf: bytes, pos: int = 0) -> tuple[int, int, int]:
    """BlockHandle = varint64 offset, varint64 size; return (offset, size, next position)."""
    offset, pos = _varint(buf, pos)
    size, pos = _varint(buf, pos)
    return offset, size, pos


def read_index(index_path: Path) -> dict[str, BundleEntry]:
    """Parse a bundle ``.index`` file into tensor name -> entry (header entry dropped)."""
    table = index_path.read_bytes()
    if len(table) < _FOOTER_LEN:
        raise ValueError(f"{index_path}: too short to be an SSTable")
    footer = table[-_FOOTER_LEN:]
    if struct.unpack_from("<Q", footer, 40)[0] != _TABLE_MAGIC:
        raise ValueError(f"{index_path}: bad SSTable magic number")
    _, _, pos = _block_handle(footer)  # metaindex handle: unused by TF bundles
    index_offset, index_size, _ = _block_handle(footer, pos)

    entries: dict[str, BundleEntry] = {}
    for _, handle in _block_entries(_block(table, index_offset, index_size)):
        data_offset, data_size, _ = _block_handle(handle)
        for key, value in _block_entries(_block(table, data_offset, data_size)):
            if key == b"":  # BundleHeaderProto (num_shards, endianness, version)
                _check_header(value)
                continue
            entries[key.decode("utf-8")] = _decode_entry(value)
    return entries


def _check_header(buf: bytes) -> None:
    """Refuse big-endian bundles (BundleHeaderProto.endianness = 2, BIG = 1)."""
    for number, _, value in _proto_fields(buf):
        if number == 2 and value == 1:
            raise ValueError("big-endian tensor bundles are not supported")


# --- crc32c (Castagnoli), only used when verification is asked for --------------------------


def _crc32c_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """Plain crc32c of ``data`` (slow pure Python: ~1 s per few MB)."""
    crc = 0xFFFFFFFF
    table = _CRC_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _unmask(masked: int) -> int:
    """Undo LevelDB's crc mask (TF stores BundleEntryProto.crc32c masked)."""
    rot = (masked - 0xA282EAD8) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF


# --- public API ---------------------------------------------------------------------------


def read_checkpoint(prefix: str | Path, *, verify_crc: bool = False) -> dict[str, np.ndarray]:
    """Read every tensor of the V2 checkpoint at ``prefix`` into name -> numpy array.

    ``prefix`` is what TF calls the checkpoint path (``<prefix>.index`` must exist). A
    directory path means the empty prefix inside it, as musicnn ships its checkpoints.
    ``verify_crc`` checks each tensor's crc32c (pure Python, so it costs seconds).
    """
    prefix = Path(prefix)
    stem = f"{prefix}/" if prefix.is_dir() else str(prefix)
    index_path = Path(stem + ".index")
    if not index_path.is_file():
        raise FileNotFoundError(f"no checkpoint index at {index_path}")
    entries = read_index(index_path)
    num_shards = 1 + max((e.shard_id for e in entries.values()), default=0)

    shards: dict[int, bytes] = {}
    tensors: dict[str, np.ndarray] = {}
    for name, entry in sorted(entries.items()):
        if entry.dtype not in _DTYPES:
            raise ValueError(f"{name}: unsupported dtype enum {entry.dtype}")
        if entry.shard_id not in shards:
            shard_path = Path(f"{stem}.data-{entry.shard_id:05d}-of-{num_shards:05d}")
            shards[entry.shard_id] = shard_path.read_bytes()
        raw = shards[entry.shard_id][entry.offset : entry.offset + entry.size]
        if len(raw) != entry.size:
            raise ValueError(f"{name}: data shard is truncated")
        if verify_crc and crc32c(raw) != _unmask(entry.crc32c):
            raise ValueError(f"{name}: crc32c mismatch")
        # Copy so the arrays own writable memory instead of viewing the shard bytes.
        tensors[name] = np.frombuffer(raw, dtype=_DTYPES[entry.dtype]).reshape(entry.shape).copy()
    log.debug("read %d tensors from %s", len(tensors), index_path)
    return tensors
