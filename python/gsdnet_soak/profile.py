"""Board profile, model manifest and features of the soak (gsdnet_soak.__main__)."""
from __future__ import annotations

import json
import math
import random
import re
import socket
import struct
import sys
import tomllib
from pathlib import Path

import gsdnet_client as gc

MODALITIES = gc.MODALITIES  # ("text", "audio", "visual"), avail bits 1, 2, 4
LOOPBACK = "127.0.0.1"


def read_manifest(model: Path) -> dict:
    """Feature sizes and normalisation statistics of the model's modalities (manifest.toml
    `[modalities]`; the earlier format: `[dims]`). `dims` holds only the modalities the model
    has: the soak's sensors send those and nothing about the others (the daemon would refuse
    them as NoSuchModality)."""
    with open(model / "manifest.toml", "rb") as f:
        manifest = tomllib.load(f)
    table = manifest.get("modalities") or manifest["dims"]
    dims = {m: int(table[m]) for m in MODALITIES if m in table}
    norm = manifest.get("normalisation", {})
    stats = {m: (norm.get(f"{m}_mean"), norm.get(f"{m}_std")) for m in dims}
    return {"dims": dims, "stats": stats}


def set_key(text: str, section: str, key: str, value: str) -> str:
    """Sets `key = value` in `[section]` of a TOML text (replaced, or appended to the section)."""
    lines = text.splitlines()
    start = next((i for i, l in enumerate(lines) if l.strip() == f"[{section}]"), None)
    if start is None:
        return text.rstrip("\n") + f"\n\n[{section}]\n{key} = {value}\n"
    end = next((i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("[")), len(lines))
    for i in range(start + 1, end):
        if re.match(rf"^\s*{re.escape(key)}\s*=", lines[i]):
            lines[i] = f"{key} = {value}"
            return "\n".join(lines) + "\n"
    lines.insert(end, f"{key} = {value}")
    return "\n".join(lines) + "\n"


def write_profile(tmp: Path, args, sock: Path, port: int, conversations: int) -> Path:
    """--board (boards/x86-dev.toml) with loopback-only endpoints in `tmp` and the soak's limits."""
    text = args.board.read_text()
    text = set_key(text, "engine", "models", json.dumps(str(args.model.resolve())))
    text = set_key(text, "engine", "backend", '"tract"')
    text = set_key(text, "engine", "threads", str(args.threads))
    text = set_key(text, "inputs", "tcp", json.dumps([f"{LOOPBACK}:{port}"]))
    text = set_key(text, "inputs", "unix", json.dumps([str(sock)]))
    text = set_key(text, "inputs", "serial", "[]")
    # Honest sensors send ~15-25 frames/s; the flood sends thousands.
    text = set_key(text, "inputs", "max_frames_per_second", str(args.max_fps))
    text = set_key(text, "inputs", "burst", str(args.burst))
    current = re.search(r"^max_conversations\s*=\s*(\d+)", text, re.M)
    if current is None or int(current.group(1)) < conversations:
        text = set_key(text, "assembly", "max_conversations", str(conversations))
    for item in args.set:
        name, _, value = item.partition("=")
        section, _, key = name.rpartition(".")
        if not section or not key or not value:
            raise SystemExit(f"--set {item!r}: expected SECTION.KEY=VALUE")
        text = set_key(text, section, key, value)
    if re.search(r"^\s*allow_remote\s*=\s*true", text, re.M):
        raise SystemExit("the soak profile must stay loopback-only (allow_remote = true found)")
    path = tmp / "board.toml"
    path.write_text(text)
    return path


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


# ---- features -------------------------------------------------------------------------------

def read_recording(path: Path) -> list:
    """Feature triples (text, audio, visual; None where not captured) of a .gsdrec recording
    (version 1 or 2), read with gsdnet_client's postcard reader (src/recording: `Record` layout;
    version 2 has a class label index before the continuous label, version 1 a binary label
    after it)."""
    data = path.read_bytes()
    version = struct.unpack("<H", data[6:8])[0] if len(data) >= 8 else 0
    if data[:6] != b"GSDREC" or version not in (1, 2):
        raise ValueError(f"{path}: not a version-1 or -2 gsdnet recording")
    out, pos = [], 8
    while pos + 4 <= len(data):
        n = struct.unpack("<I", data[pos:pos + 4])[0]
        payload = data[pos + 4:pos + 4 + n]
        pos += 8 + n
        r = gc.Reader(payload)
        if r.varint() != 1:  # 0 = Conversation, 1 = Utterance
            continue
        r.string()  # conversation
        r.string()  # utterance id
        r.varint()  # speaker
        r.varint()  # position
        if r.u8():
            r.varint()  # timestamp_ms
        if version == 2 and r.u8():
            r.varint()  # label (class index)
        if r.u8():
            r.f32()  # label_cont
        if version == 1 and r.u8():
            r.u8()  # label_bin
        triple = []
        for _ in MODALITIES:
            triple.append([r.f32() for _ in range(r.varint())] if r.u8() else None)
        out.append(tuple(triple))
    return out


def feature_pool(args, manifest: dict, rng: random.Random) -> tuple:
    """(pool, source): real features when the recording reads and matches the dims, else random
    finite values drawn around the manifest's mean/std (constant columns at their mean)."""
    dims = manifest["dims"]
    try:
        # Only the model's modalities: a recording with more is used without the others.
        pool = [tuple(v if m in dims else None for m, v in zip(MODALITIES, t)) for t in read_recording(args.recording)]
        ok = [t for t in pool if all(v is None or len(v) == dims[m] for m, v in zip(MODALITIES, t))]
        ok = [t for t in ok if any(v is not None for v in t)
              and all(v is None or all(math.isfinite(x) for x in v) for v in t)]
        if ok:
            return ok, f"{args.recording} ({len(ok)} utterances)"
    except (OSError, ValueError, gc.ProtocolError, struct.error, IndexError) as e:
        print(f"soak: cannot use {args.recording} ({e}); random features", file=sys.stderr)
    pool = []
    for _ in range(64):
        triple = []
        for m in MODALITIES:
            if m not in dims:
                triple.append(None)
                continue
            mean, std = manifest["stats"][m]
            mean = mean or [0.0] * dims[m]
            std = std or [1.0] * dims[m]
            triple.append([mu + s * rng.gauss(0, 1) for mu, s in zip(mean, std)])
        pool.append(tuple(triple))
    return pool, "random (manifest mean/std)"


# ---- ledger: what was sent, what was published ---------------------------------------------
