"""The frontend's pins, read from the committed `frontend.toml` (the one definition of the
package, version, sha256s, I/O names and pooling)."""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass
from pathlib import Path

PINS_FILE = "frontend.toml"


class PinError(ValueError):
    """frontend.toml is absent or malformed, or a file does not match its pinned sha256."""


@dataclass(frozen=True)
class Pins:
    package: str
    version: str
    wheel_sha256: str
    archive: str
    safetensors_sha256: str
    encoder: str
    encoder_sha256: str
    tokenizer: str
    tokenizer_sha256: str
    inputs: tuple[str, ...]
    output: str
    hidden: int
    max_tokens: int
    pooling: str
    normalize: bool

    @classmethod
    def load(cls, folder: str | Path) -> "Pins":
        path = Path(folder) / PINS_FILE
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
            src, files, enc, text = doc["source"], doc["files"], doc["encoder"], doc["text"]
            pins = cls(
                package=src["package"],
                version=src["version"],
                wheel_sha256=src["wheel_sha256"],
                archive=src["archive"],
                safetensors_sha256=src["safetensors_sha256"],
                encoder=files["encoder"],
                encoder_sha256=files["encoder_sha256"],
                tokenizer=files["tokenizer"],
                tokenizer_sha256=files["tokenizer_sha256"],
                inputs=tuple(enc["inputs"]),
                output=enc["output"],
                hidden=int(enc["hidden"]),
                max_tokens=int(text["max_tokens"]),
                pooling=text["pooling"],
                normalize=bool(text["normalize"]),
            )
        except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as e:
            raise PinError(f"{path}: {e!r}") from e
        if doc.get("kind") != "sentence-encoder" or pins.pooling != "mean":
            raise PinError(f"{path}: only kind sentence-encoder with mean pooling is known")
        return pins


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_sha256(what: str, actual: str, pinned: str) -> None:
    if actual != pinned:
        raise PinError(f"{what}: sha256 {actual}, pinned {pinned}")
