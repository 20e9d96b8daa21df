"""A reader of the safetensors format (numpy only, no torch): an 8-byte little-endian header
length, a JSON header naming each tensor's dtype, shape and byte range, then the raw
little-endian tensor bytes."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

_DTYPES = {
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "F64": np.dtype("<f8"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}

# A header larger than this is not a model header but a corrupt or hostile file.
_MAX_HEADER = 100 * 1024 * 1024


class SafetensorsError(ValueError):
    """The file is not a well-formed safetensors file."""


def read_safetensors(path: str | Path) -> dict[str, np.ndarray]:
    """Every tensor of the file, as a read-only numpy array of its own dtype and shape."""
    return parse_safetensors(Path(path).read_bytes(), str(path))


def parse_safetensors(data: bytes, path: str = "<bytes>") -> dict[str, np.ndarray]:
    """Every tensor of a safetensors file held in memory (`path` names it in errors)."""
    if len(data) < 8:
        raise SafetensorsError(f"{path}: {len(data)} bytes, shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", data[:8])
    if n > _MAX_HEADER or 8 + n > len(data):
        raise SafetensorsError(f"{path}: header length {n} does not fit the {len(data)}-byte file")
    try:
        header = json.loads(data[8 : 8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SafetensorsError(f"{path}: header is not JSON: {e}") from e
    body = memoryview(data)[8 + n :]
    out: dict[str, np.ndarray] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        out[name] = _tensor(path, name, info, body)
    return out


def _tensor(path, name: str, info: dict, body: memoryview) -> np.ndarray:
    try:
        dtype = _DTYPES[info["dtype"]]
        shape = tuple(int(d) for d in info["shape"])
        begin, end = (int(o) for o in info["data_offsets"])
    except (KeyError, TypeError, ValueError) as e:
        raise SafetensorsError(f"{path}: tensor {name!r}: bad header entry {info!r}") from e
    count = int(np.prod(shape, dtype=np.int64))
    if not 0 <= begin <= end <= len(body) or end - begin != count * dtype.itemsize:
        raise SafetensorsError(
            f"{path}: tensor {name!r}: bytes {begin}..{end} do not hold {shape} of {info['dtype']}"
        )
    arr = np.frombuffer(body[begin:end], dtype=dtype).reshape(shape)
    return arr
