#!/usr/bin/env python3
"""Reference client for the gsdnet daemon wire protocol (docs/PROTOCOL.md), standard library only.

Encodes and decodes frames (postcard body, CRC-32, COBS, 0x00 delimiter) independently of the
Rust code, so a test using it proves the protocol document is complete.

Usage:
    gsdnet_client.py status    (--unix PATH | --tcp HOST:PORT)
    gsdnet_client.py subscribe (--unix PATH | --tcp HOST:PORT) [--count N]
    gsdnet_client.py scored    (--unix PATH | --tcp HOST:PORT) [--count N]   (confidence, uncertain flag)
    gsdnet_client.py health    (--unix PATH | --tcp HOST:PORT)
"""

import argparse
import socket
import struct
import sys
import zlib

PROTOCOL_VERSION = 1
MAX_FRAME_LEN = 4096
MODALITIES = ("text", "audio", "visual")
DIMS = {"text": 100, "audio": 73, "visual": 100}
REJECT_REASONS = (
    "Framing", "Crc", "Oversized", "UnknownVersion", "Malformed", "WrongLength", "NonFinite",
    "Unexpected", "Late", "Duplicate", "Truncated", "Flood", "Capacity",
)
# Message tags (variant index of the Rust enum).
(FEATURES, UTT_START, UTT_END, DROPOUT, RESET, SUBSCRIBE, STATUS_REQUEST, STATUS, RESULT,
 HEALTH_REQUEST, HEALTH, SUBSCRIBE_SCORED, SCORED) = range(13)
HEALTH_FIELDS = ("conversation_restarts", "late_replayed", "conversations_evicted",
                 "utterances_flushed", "connections_open", "connections_refused",
                 "connections_evicted", "connections_idle_closed", "slow_clients_disconnected",
                 "results_lost", "consecutive_inference_errors")


class ProtocolError(Exception):
    """A frame that does not decode; `reason` matches the daemon's RejectReason names."""

    def __init__(self, reason, detail):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


# ---- primitives -----------------------------------------------------------------------------

def varint(n):
    if n < 0:
        raise ValueError("varint must be non-negative")
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def string(s):
    raw = s.encode("utf-8")
    return varint(len(raw)) + raw


class Reader:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def take(self, n):
        if self.pos + n > len(self.data):
            raise ProtocolError("Malformed", "truncated body")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def varint(self, max_bytes=10):
        value, shift = 0, 0
        for _ in range(max_bytes):
            byte = self.take(1)[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
        raise ProtocolError("Malformed", "varint too long")

    def u8(self):
        return self.take(1)[0]

    def f32(self):
        return struct.unpack("<f", self.take(4))[0]

    def string(self):
        n = self.varint()
        try:
            return self.take(n).decode("utf-8")
        except UnicodeDecodeError as e:
            raise ProtocolError("Malformed", str(e)) from e


# ---- COBS -----------------------------------------------------------------------------------

def cobs_encode(data):
    out = bytearray([0])
    code_pos, code = 0, 1
    for byte in data:
        if byte == 0:
            out[code_pos] = code
            code_pos, code = len(out), 1
            out.append(0)
        else:
            out.append(byte)
            code += 1
            if code == 0xFF:
                out[code_pos] = code
                code_pos, code = len(out), 1
                out.append(0)
    out[code_pos] = code
    return bytes(out)


def cobs_decode(data):
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        code = data[i]
        block = data[i + 1:i + code]
        if code == 0 or i + code > n or 0 in block:
            raise ProtocolError("Framing", "bad COBS block")
        out += block
        i += code
        if code < 0xFF and i < n:
            out.append(0)
    return bytes(out)


# ---- messages -------------------------------------------------------------------------------

def features(conversation, utterance, speaker, modality, timestamp_us, values):
    """A Features message body (without version byte)."""
    m = MODALITIES.index(modality)
    vals = b"".join(struct.pack("<f", float(v)) for v in values)
    return (varint(FEATURES) + string(conversation) + varint(utterance) + varint(speaker) + varint(m)
            + varint(timestamp_us) + varint(len(values)) + vals)


def boundary(tag, conversation, utterance, speaker, timestamp_us):
    return varint(tag) + string(conversation) + varint(utterance) + varint(speaker) + varint(timestamp_us)


def utterance_start(conversation, utterance, speaker=0, timestamp_us=0):
    return boundary(UTT_START, conversation, utterance, speaker, timestamp_us)


def utterance_end(conversation, utterance, speaker=0, timestamp_us=0):
    return boundary(UTT_END, conversation, utterance, speaker, timestamp_us)


def dropout(conversation, utterance, modality, timestamp_us=0):
    return (varint(DROPOUT) + string(conversation) + varint(utterance)
            + varint(MODALITIES.index(modality)) + varint(timestamp_us))


def reset(conversation):
    return varint(RESET) + string(conversation)


def subscribe():
    return varint(SUBSCRIBE)


def status_request():
    return varint(STATUS_REQUEST)


def health_request():
    return varint(HEALTH_REQUEST)


def subscribe_scored():
    return varint(SUBSCRIBE_SCORED)


def frame(message, version=PROTOCOL_VERSION):
    """Complete frame (delimiter included) around a message body."""
    body = bytes([version]) + message
    payload = body + struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF)
    return cobs_encode(payload) + b"\x00"


def _decode_status(r):
    keys = ("uptime_ms",)
    out = {k: r.varint() for k in keys}
    out["engine"] = r.string()
    for k in ("frames_accepted", "windows_run", "windows_superseded", "windows_dropped",
              "inference_errors", "results_published", "queue_len", "queue_capacity",
              "open_conversations", "clients"):
        out[k] = r.varint()
    rejected = {}
    for _ in range(r.varint()):
        reason = r.varint()
        name = REJECT_REASONS[reason] if reason < len(REJECT_REASONS) else f"reason{reason}"
        rejected[name] = r.varint()
    out["rejected"] = rejected
    out["empty_utterances"] = r.varint()
    return out


def _decode_health(r):
    out = {k: r.varint() for k in HEALTH_FIELDS}
    out["watchdog_stopped"] = _decode_bool(r)
    return out


def _decode_bool(r):
    flag = r.u8()
    if flag > 1:
        raise ProtocolError("Malformed", f"bool byte {flag}")
    return bool(flag)


def _decode_scored(r):
    out = {"conversation": r.string(), "closed_utterance": r.varint(), "completion": r.string(),
           "latency_us": r.varint(), "abstain_below": r.f32(), "utterances": []}
    for _ in range(r.varint()):
        u = {"utterance": r.varint(), "avail": r.u8(), "label": r.u8()}
        u["probs"] = [r.f32() for _ in range(r.varint())]
        u["reg"] = r.f32()
        u["confidence"] = r.f32()
        u["uncertain"] = _decode_bool(r)
        out["utterances"].append(u)
    return out


def _decode_result(r):
    out = {"conversation": r.string(), "closed_utterance": r.varint(), "completion": r.string(),
           "latency_us": r.varint(), "utterances": []}
    for _ in range(r.varint()):
        out["utterances"].append({"utterance": r.varint(), "avail": r.u8(), "label": r.u8(),
                                  "probs": [r.f32(), r.f32()], "reg": r.f32()})
    return out


def _decode_input(tag, r):
    if tag == FEATURES:
        msg = {"conversation": r.string(), "utterance": r.varint(), "speaker": r.varint(),
               "modality": MODALITIES[r.varint()], "timestamp_us": r.varint()}
        msg["values"] = [r.f32() for _ in range(r.varint())]
        return msg
    if tag in (UTT_START, UTT_END):
        return {"conversation": r.string(), "utterance": r.varint(), "speaker": r.varint(),
                "timestamp_us": r.varint()}
    if tag == DROPOUT:
        return {"conversation": r.string(), "utterance": r.varint(),
                "modality": MODALITIES[r.varint()], "timestamp_us": r.varint()}
    if tag == RESET:
        return {"conversation": r.string()}
    return {}


def decode_frame(encoded):
    """Decodes one frame given without its delimiter; returns (tag, dict)."""
    payload = cobs_decode(encoded)
    if len(payload) < 5:
        raise ProtocolError("Crc", "frame too short")
    body, crc = payload[:-4], struct.unpack("<I", payload[-4:])[0]
    if zlib.crc32(body) & 0xFFFFFFFF != crc:
        raise ProtocolError("Crc", "CRC mismatch")
    if body[0] != PROTOCOL_VERSION:
        raise ProtocolError("UnknownVersion", str(body[0]))
    r = Reader(body[1:])
    tag = r.varint()
    if tag == STATUS:
        msg = _decode_status(r)
    elif tag == RESULT:
        msg = _decode_result(r)
    elif tag == HEALTH:
        msg = _decode_health(r)
    elif tag == SCORED:
        msg = _decode_scored(r)
    elif tag in (HEALTH_REQUEST, SUBSCRIBE_SCORED):
        msg = {}
    elif tag <= STATUS_REQUEST:
        msg = _decode_input(tag, r)
    else:
        raise ProtocolError("Malformed", f"unknown tag {tag}")
    if r.pos != len(r.data):
        raise ProtocolError("Malformed", "trailing bytes")
    return tag, msg


class FrameDecoder:
    """Streaming accumulator: feed bytes, get decoded (tag, dict) or ProtocolError items."""

    def __init__(self, max_len=MAX_FRAME_LEN):
        self.buf = bytearray()
        self.max_len = max_len
        self.skipping = False

    def feed(self, data):
        out = []
        for byte in data:
            if byte == 0:
                if not self.skipping and self.buf:
                    try:
                        out.append(decode_frame(bytes(self.buf)))
                    except ProtocolError as e:
                        out.append(e)
                self.buf.clear()
                self.skipping = False
            elif not self.skipping:
                if len(self.buf) + 1 >= self.max_len:
                    out.append(ProtocolError("Oversized", f"frame exceeds {self.max_len} bytes"))
                    self.buf.clear()
                    self.skipping = True
                else:
                    self.buf.append(byte)
        return out


# ---- command line ---------------------------------------------------------------------------

def connect(args):
    if args.unix:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(args.unix)
    else:
        host, port = args.tcp.rsplit(":", 1)
        s = socket.create_connection((host, int(port)))
    s.settimeout(args.timeout)
    return s


def receive(sock, decoder, want_tag):
    while True:
        data = sock.recv(4096)
        if not data:
            raise ConnectionError("daemon closed the connection")
        for item in decoder.feed(data):
            if isinstance(item, ProtocolError):
                print(f"bad frame from daemon: {item}", file=sys.stderr)
            elif item[0] == want_tag:
                return item[1]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["status", "health", "subscribe", "scored"])
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--unix")
    g.add_argument("--tcp")
    p.add_argument("--count", type=int, default=0, help="results to print (0 = forever)")
    p.add_argument("--timeout", type=float, default=None)
    args = p.parse_args()
    dec = FrameDecoder()
    with connect(args) as s:
        if args.command in ("status", "health"):
            request, answer = (status_request(), STATUS) if args.command == "status" else (health_request(), HEALTH)
            s.sendall(frame(request))
            for k, v in receive(s, dec, answer).items():
                print(f"{k}: {v}")
            return
        scored = args.command == "scored"
        s.sendall(frame(subscribe_scored() if scored else subscribe()))
        n = 0
        while args.count == 0 or n < args.count:
            r = receive(s, dec, SCORED if scored else RESULT)
            last = r["utterances"][-1] if r["utterances"] else {}
            extra = ""
            if scored and last:
                extra = f" confidence {last['confidence']:.3f}{' UNCERTAIN' if last['uncertain'] else ''}"
            print(f"{r['conversation']} utt {r['closed_utterance']}: label {last.get('label')} "
                  f"reg {last.get('reg', float('nan')):+.3f}{extra} ({r['latency_us']} us)", flush=True)
            n += 1


if __name__ == "__main__":
    main()
