"""Reference client for the gsdnet daemon wire protocol, version 2 (docs/PROTOCOL.md), standard
library only.

Encodes and decodes every message and frame (postcard body, CRC-32, COBS, 0x00 delimiter)
independently of the Rust code, from a field table (`SCHEMA`) written from the document, so a
test using it proves the document is complete.

Usage:
    python3 -m gsdnet_client status    (--unix PATH | --tcp HOST:PORT)
    python3 -m gsdnet_client health    (--unix PATH | --tcp HOST:PORT)
    python3 -m gsdnet_client model     (--unix PATH | --tcp HOST:PORT)   (modalities, sizes, classes)
    python3 -m gsdnet_client limits    (--unix PATH | --tcp HOST:PORT)   (rates, capacities a sender paces to)
    python3 -m gsdnet_client subscribe (--unix PATH | --tcp HOST:PORT) [--count N]
    python3 -m gsdnet_client scored    (--unix PATH | --tcp HOST:PORT) [--count N]   (confidence, uncertain flag)
"""

import argparse
import socket
import struct
import sys
import zlib

PROTOCOL_VERSION = 2
MAX_FRAME_LEN = 16384
MAX_CONVERSATION_ID = 32
MAX_VALUES = 2048
MAX_CLASSES = 64
MAX_CLASS_NAME = 32
MAX_REJECT_DETAIL = 128
MAX_TRANSCRIPT = 2048  # UTF-8 bytes of a Transcript's text
MODALITIES = ("text", "audio", "visual")  # wire value = index; availability bits 1, 2, 4
REJECT_REASONS = (
    "Framing", "Crc", "Oversized", "UnknownVersion", "Malformed", "WrongLength", "NonFinite",
    "Unexpected", "Late", "Duplicate", "Truncated", "Flood", "Capacity", "NoSuchModality",
    "TranscriptRefused",
)
# Message tags (variant index of the Rust enum).
(FEATURES, UTT_START, UTT_END, DROPOUT, RESET, SUBSCRIBE, STATUS_REQUEST, STATUS, RESULT,
 HEALTH_REQUEST, HEALTH, SUBSCRIBE_SCORED, SCORED, MODEL_INFO_REQUEST, MODEL_INFO, REJECT) = range(16)
# Tag 16: an utterance's transcript (models whose text modality is a frontend); 17-21: a
# sender's own refusals and the daemon's limits.
TRANSCRIPT = 16
(CONVERSATION_END, SUBSCRIBE_NOTICES, NOTICE, LIMITS_REQUEST, LIMITS) = range(17, 22)
HEALTH_FIELDS = ("conversation_restarts", "late_replayed", "conversations_evicted",
                 "utterances_flushed", "connections_open", "connections_refused",
                 "connections_evicted", "connections_idle_closed", "slow_clients_disconnected",
                 "results_lost", "consecutive_inference_errors")


class ProtocolError(Exception):
    """A frame that does not decode; `reason` matches the daemon's RejectReason names."""

    def __init__(self, reason, detail):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


# ---- field table ----------------------------------------------------------------------------
# Types: "u8", "varint" (u16/u32/u64), "f32", "bool", "modality", "reason", ("str", max bytes or
# None), ("vec", type, max or None), ("opt", type), ("struct", fields), "rejected" (the status
# counters, as a {reason name: count} dict). A struct is a tuple of (name, type) in wire order.

CONV = ("str", MAX_CONVERSATION_ID)
CLASS = ("str", MAX_CLASS_NAME)
BOUNDARY = (("conversation", CONV), ("utterance", "varint"), ("speaker", "varint"), ("timestamp_us", "varint"))
UTTERANCE_RESULT = (("utterance", "varint"), ("avail", "u8"), ("label", "varint"), ("label_name", CLASS),
                    ("probs", ("vec", "f32", MAX_CLASSES)), ("reg", ("opt", "f32")))
SCORED_UTTERANCE = UTTERANCE_RESULT + (("confidence", "f32"), ("uncertain", "bool"))
WINDOW_HEAD = (("conversation", CONV), ("closed_utterance", "varint"), ("completion", ("str", None)),
               ("latency_us", "varint"))
SCHEMA = {
    FEATURES: (("conversation", CONV), ("utterance", "varint"), ("speaker", "varint"), ("modality", "modality"),
               ("timestamp_us", "varint"), ("values", ("vec", "f32", MAX_VALUES))),
    UTT_START: BOUNDARY,
    UTT_END: BOUNDARY,
    DROPOUT: (("conversation", CONV), ("utterance", "varint"), ("modality", "modality"), ("timestamp_us", "varint")),
    RESET: (("conversation", CONV),),
    SUBSCRIBE: (),
    STATUS_REQUEST: (),
    STATUS: (("uptime_ms", "varint"), ("engine", ("str", None)))
    + tuple((k, "varint") for k in ("frames_accepted", "windows_run", "windows_superseded", "windows_dropped",
                                    "inference_errors", "results_published", "queue_len", "queue_capacity",
                                    "open_conversations", "clients"))
    + (("rejected", "rejected"), ("empty_utterances", "varint")),
    RESULT: WINDOW_HEAD + (("utterances", ("vec", ("struct", UTTERANCE_RESULT), None)),),
    HEALTH_REQUEST: (),
    HEALTH: tuple((k, "varint") for k in HEALTH_FIELDS) + (("watchdog_stopped", "bool"),),
    SUBSCRIBE_SCORED: (),
    SCORED: WINDOW_HEAD + (("abstain_below", "f32"), ("utterances", ("vec", ("struct", SCORED_UTTERANCE), None))),
    MODEL_INFO_REQUEST: (),
    MODEL_INFO: (("name", ("str", None)), ("version", ("str", None)),
                 ("modalities", ("vec", ("struct", (("modality", "modality"), ("size", "varint"))), 3)),
                 ("classes", ("vec", CLASS, MAX_CLASSES)), ("has_regression", "bool"), ("window", "varint")),
    REJECT: (("reason", "reason"), ("detail", ("str", MAX_REJECT_DETAIL))),
    TRANSCRIPT: (("conversation", CONV), ("utterance", "varint"), ("speaker", "varint"), ("timestamp_us", "varint"),
                 ("text", ("str", MAX_TRANSCRIPT))),
    CONVERSATION_END: (("conversation", CONV),),
    SUBSCRIBE_NOTICES: (),
    NOTICE: (("reason", "reason"), ("conversation", CONV), ("utterance", ("opt", "varint")), ("count", "varint"),
             ("detail", ("str", MAX_REJECT_DETAIL))),
    LIMITS_REQUEST: (),
    LIMITS: tuple((k, "varint") for k in ("max_frames_per_second", "burst", "total_frames_per_second", "total_burst",
                                          "max_conversations", "max_open_utterances", "evict_idle_ms",
                                          "idle_conversation_ms", "max_utterance_ms"))
    + (("deadlines", ("vec", ("struct", (("modality", "modality"), ("deadline_ms", "varint"))), 3)),)
    + tuple((k, "varint") for k in ("window", "queue_capacity", "idle_timeout_ms", "outgoing_queue",
                                    "notice_interval_ms")),
}


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


def f32(x):
    return struct.pack("<f", float(x))


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

    def bool(self):
        flag = self.u8()
        if flag > 1:
            raise ProtocolError("Malformed", f"bool byte {flag}")
        return bool(flag)

    def string(self, max_bytes=None):
        n = self.varint()
        if max_bytes is not None and n > max_bytes:
            raise ProtocolError("Malformed", f"string of {n} bytes, at most {max_bytes}")
        try:
            return self.take(n).decode("utf-8")
        except UnicodeDecodeError as e:
            raise ProtocolError("Malformed", str(e)) from e


def _name(table, index, what):
    if index >= len(table):
        raise ProtocolError("Malformed", f"unknown {what} {index}")
    return table[index]


def encode_value(kind, v):
    """Bytes of value `v` of field type `kind` (see the field table)."""
    if kind == "u8":
        return bytes([v])
    if kind == "varint":
        return varint(v)
    if kind == "f32":
        return f32(v)
    if kind == "bool":
        return bytes([1 if v else 0])
    if kind == "modality":
        return varint(MODALITIES.index(v))
    if kind == "reason":
        return varint(REJECT_REASONS.index(v))
    if kind == "rejected":
        return varint(len(v)) + b"".join(varint(REJECT_REASONS.index(k)) + varint(n) for k, n in v.items())
    tag = kind[0]
    if tag == "str":
        return string(v)
    if tag == "vec":
        return varint(len(v)) + b"".join(encode_value(kind[1], x) for x in v)
    if tag == "opt":
        return b"\x00" if v is None else b"\x01" + encode_value(kind[1], v)
    return b"".join(encode_value(t, v[name]) for name, t in kind[1])


def decode_value(kind, r):
    """Reads one value of field type `kind`; Malformed when it breaks a bound."""
    if kind in ("u8", "varint", "f32", "bool"):
        return getattr(r, kind)()
    if kind == "modality":
        return _name(MODALITIES, r.varint(), "modality")
    if kind == "reason":
        return _name(REJECT_REASONS, r.varint(), "reject reason")
    if kind == "rejected":
        out = {}
        for _ in range(r.varint()):
            reason = _name(REJECT_REASONS, r.varint(), "reject reason")
            out[reason] = r.varint()
        return out
    tag = kind[0]
    if tag == "str":
        return r.string(kind[1])
    if tag == "vec":
        n = r.varint()
        if kind[2] is not None and n > kind[2]:
            raise ProtocolError("Malformed", f"{n} elements, at most {kind[2]}")
        return [decode_value(kind[1], r) for _ in range(n)]
    if tag == "opt":
        flag = r.u8()
        if flag > 1:
            raise ProtocolError("Malformed", f"option byte {flag}")
        return decode_value(kind[1], r) if flag else None
    return {name: decode_value(t, r) for name, t in kind[1]}


def encode(tag, msg=None):
    """Message body (tag and fields, without the version byte) of any message."""
    return varint(tag) + encode_value(("struct", SCHEMA[tag]), msg or {})


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
    return encode(FEATURES, {"conversation": conversation, "utterance": utterance, "speaker": speaker,
                             "modality": modality, "timestamp_us": timestamp_us, "values": list(values)})


def transcript(conversation, utterance, speaker, timestamp_us, text):
    """A Transcript message body (without version byte): the utterance's text, UTF-8, at most
    MAX_TRANSCRIPT bytes, for a model whose text modality is a frontend."""
    if len(text.encode("utf-8")) > MAX_TRANSCRIPT:
        raise ValueError(f"transcript of {len(text.encode('utf-8'))} UTF-8 bytes, at most {MAX_TRANSCRIPT}")
    return encode(TRANSCRIPT, {"conversation": conversation, "utterance": utterance, "speaker": speaker,
                               "timestamp_us": timestamp_us, "text": text})


def boundary(tag, conversation, utterance, speaker, timestamp_us):
    return encode(tag, {"conversation": conversation, "utterance": utterance, "speaker": speaker,
                        "timestamp_us": timestamp_us})


def utterance_start(conversation, utterance, speaker=0, timestamp_us=0):
    return boundary(UTT_START, conversation, utterance, speaker, timestamp_us)


def utterance_end(conversation, utterance, speaker=0, timestamp_us=0):
    return boundary(UTT_END, conversation, utterance, speaker, timestamp_us)


def dropout(conversation, utterance, modality, timestamp_us=0):
    return encode(DROPOUT, {"conversation": conversation, "utterance": utterance, "modality": modality,
                            "timestamp_us": timestamp_us})


def reset(conversation):
    return encode(RESET, {"conversation": conversation})


def conversation_end(conversation):
    return encode(CONVERSATION_END, {"conversation": conversation})


def subscribe():
    return encode(SUBSCRIBE)


def subscribe_notices():
    return encode(SUBSCRIBE_NOTICES)


def limits_request():
    return encode(LIMITS_REQUEST)


def status_request():
    return encode(STATUS_REQUEST)


def health_request():
    return encode(HEALTH_REQUEST)


def subscribe_scored():
    return encode(SUBSCRIBE_SCORED)


def model_info_request():
    return encode(MODEL_INFO_REQUEST)


def frame(message, version=PROTOCOL_VERSION):
    """Complete frame (delimiter included) around a message body."""
    body = bytes([version]) + message
    payload = body + struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF)
    return cobs_encode(payload) + b"\x00"


def decode_frame(encoded):
    """Decodes one frame given without its delimiter; returns (tag, dict)."""
    payload = cobs_decode(encoded)
    if len(payload) < 5:
        raise ProtocolError("Crc", "frame too short")
    body, crc = payload[:-4], struct.unpack("<I", payload[-4:])[0]
    if zlib.crc32(body) & 0xFFFFFFFF != crc:
        raise ProtocolError("Crc", "CRC mismatch")
    if body[0] != PROTOCOL_VERSION:
        raise ProtocolError("UnknownVersion", f"version {body[0]}, this client speaks {PROTOCOL_VERSION}")
    r = Reader(body[1:])
    tag = r.varint()
    if tag not in SCHEMA:
        raise ProtocolError("Malformed", f"unknown tag {tag}")
    msg = decode_value(("struct", SCHEMA[tag]), r)
    if r.pos != len(r.data):
        raise ProtocolError("Malformed", "trailing bytes")
    if "conversation" in msg and any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in msg["conversation"]):
        raise ProtocolError("Malformed", "conversation id holds a control character")
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
    """The next message with `want_tag`; a Reject from the daemon raises ProtocolError."""
    while True:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("daemon closed the connection")
        for item in decoder.feed(data):
            if isinstance(item, ProtocolError):
                print(f"bad frame from daemon: {item}", file=sys.stderr)
            elif item[0] == want_tag:
                return item[1]
            elif item[0] == REJECT:
                raise ProtocolError(item[1]["reason"], item[1]["detail"])


def describe_result(r, scored):
    last = r["utterances"][-1] if r["utterances"] else {}
    reg = "" if last.get("reg") is None else f" reg {last['reg']:+.3f}"
    extra = ""
    if scored and last:
        extra = f" confidence {last['confidence']:.3f}{' UNCERTAIN' if last['uncertain'] else ''}"
    label = f"{last.get('label_name')} ({last.get('label')})" if last else "none"
    return f"{r['conversation']} utt {r['closed_utterance']}: {label}{reg}{extra} ({r['latency_us']} us)"


def main():
    p = argparse.ArgumentParser(prog="python3 -m gsdnet_client", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["status", "health", "model", "limits", "subscribe", "scored"])
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--unix")
    g.add_argument("--tcp")
    p.add_argument("--count", type=int, default=0, help="results to print (0 = forever)")
    p.add_argument("--timeout", type=float, default=None)
    args = p.parse_args()
    dec = FrameDecoder()
    requests = {"status": (status_request(), STATUS), "health": (health_request(), HEALTH),
                "model": (model_info_request(), MODEL_INFO), "limits": (limits_request(), LIMITS)}
    with connect(args) as s:
        if args.command in requests:
            request, answer = requests[args.command]
            s.sendall(frame(request))
            for k, v in receive(s, dec, answer).items():
                print(f"{k}: {v}")
            return
        scored = args.command == "scored"
        s.sendall(frame(subscribe_scored() if scored else subscribe()))
        n = 0
        while args.count == 0 or n < args.count:
            r = receive(s, dec, SCORED if scored else RESULT)
            print(describe_result(r, scored), flush=True)
            n += 1
