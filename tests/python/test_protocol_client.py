"""Protocol tests of the Python reference client (python/gsdnet_client), standard library only.

Offline tests check the byte layout of docs/PROTOCOL.md (version 2), the same bytes
tests/integration/protocol/frames.rs checks on the Rust side. Live tests talk to daemons whose Unix sockets
are in GSDNET_SOCKET (CMU-MOSI-like mock: text 100 / audio 73 / visual 100, two classes,
regression) and GSDNET_SOCKET_TA (IEMOCAP-like mock: text 384 / audio 47, six classes, no
regression); tests/integration/daemon/python_client.rs starts both and runs this file. They are skipped without
them. Runs under pytest or as a plain script.
"""

import math
import os
import random
import socket
import struct
import zlib

import gsdnet_client as g


def h(s):
    return bytes.fromhex(s.replace(" ", ""))


def check_doc_frame(tag, msg, frame, crc):
    """`msg` encodes to the documented `frame` (body CRC `crc`) and decodes back to `msg`."""
    body = g.encode(tag, msg)
    assert zlib.crc32(bytes([g.PROTOCOL_VERSION]) + body) == crc
    assert g.frame(body) == h(frame), g.frame(body).hex(" ")
    assert g.decode_frame(h(frame)[:-1]) == (tag, msg)


DOC_FRAME = h("02 02 0a 02 63 31 ac 02 02 02 01 02 01 03 80 3f 01 01 06 c0 90 32 2d c8 00")


def test_worked_example_bytes():
    f = g.frame(g.features("c1", 300, 2, "visual", 1, [1.0, -2.0]))
    assert f == DOC_FRAME
    body = bytes([2, 0, 2]) + b"c1" + bytes([0xAC, 2, 2, 2, 1, 2]) + struct.pack("<2f", 1.0, -2.0)
    assert zlib.crc32(body) == 0xC82D3290


STATUS = {"uptime_ms": 1500, "engine": "mock", "frames_accepted": 7, "windows_run": 2,
          "windows_superseded": 0, "windows_dropped": 0, "inference_errors": 0,
          "results_published": 2, "queue_len": 0, "queue_capacity": 4, "open_conversations": 1,
          "clients": 2, "rejected": {"UnknownVersion": 1, "NoSuchModality": 2}, "empty_utterances": 1}
STATUS_FRAME = "0c 02 07 dc 0b 04 6d 6f 63 6b 07 02 01 01 02 02 0e 04 01 02 02 03 01 0d 02 01 f4 be 29 5b 00"


def test_status_example_bytes():
    check_doc_frame(g.STATUS, STATUS, STATUS_FRAME, 0x5B29BEF4)
    body = g.encode(g.STATUS, STATUS)
    try:
        g.decode_frame(g.frame(body[:-1])[:-1])  # a report without the last field
        raise AssertionError("truncated status decoded")
    except g.ProtocolError as e:
        assert e.reason == "Malformed"


def test_health_example_bytes():
    health = {"conversation_restarts": 1, "late_replayed": 2, "conversations_evicted": 0,
              "utterances_flushed": 3, "connections_open": 4, "connections_refused": 0,
              "connections_evicted": 5, "connections_idle_closed": 6, "slow_clients_disconnected": 1,
              "results_lost": 300, "consecutive_inference_errors": 0, "watchdog_stopped": True}
    check_doc_frame(g.HEALTH, health, "05 02 0a 01 02 03 03 04 06 05 06 01 ac 02 06 01 b7 62 2b e0 00", 0xE02B62B7)
    check_doc_frame(g.HEALTH_REQUEST, {}, "07 02 09 d9 c8 33 0a 00", 0x0A33C8D9)


def test_scored_example_bytes():
    scored = {"conversation": "c1", "closed_utterance": 3, "completion": "gsdnet", "latency_us": 1200,
              "abstain_below": 0.75,
              "utterances": [{"utterance": 3, "avail": 5, "label": 1, "label_name": "positive",
                              "probs": [0.25, 0.75], "reg": 0.5, "confidence": 0.75, "uncertain": False}]}
    frame = ("10 02 0c 02 63 31 03 06 67 73 64 6e 65 74 b0 09 01 11 40 3f 01 03 05 01 08 70 6f 73 69 74 69 76 65 02 01"
             " 03 80 3e 01 04 40 3f 01 01 01 02 3f 01 03 40 3f 05 b3 2a ff 61 00")
    check_doc_frame(g.SCORED, scored, frame, 0x61FF2AB3)
    check_doc_frame(g.SUBSCRIBE_SCORED, {}, "07 02 0b f5 a9 3d e4 00", 0xE43DA9F5)


def test_six_class_result_example_bytes():
    result = {"conversation": "s1", "closed_utterance": 7, "completion": "gsdnet", "latency_us": 900,
              "utterances": [{"utterance": 7, "avail": 3, "label": 4, "label_name": "exc",
                              "probs": [0.0625, 0.0625, 0.125, 0.0625, 0.5, 0.1875], "reg": None}]}
    frame = ("19 02 08 02 73 31 07 06 67 73 64 6e 65 74 84 07 01 07 03 04 03 65 78 63 06 01 03 80 3d 01 03 80 3d 01 01"
             " 02 3e 01 03 80 3d 01 01 02 3f 01 03 40 3e 05 59 f1 f5 46 00")
    check_doc_frame(g.RESULT, result, frame, 0x46F5F159)


def test_model_info_and_reject_example_bytes():
    info = {"name": "gsdnet-iemocap6", "version": "0.1.0",
            "modalities": [{"modality": "text", "size": 384}, {"modality": "audio", "size": 47}],
            "classes": ["hap", "sad", "neu", "ang", "exc", "fru"], "has_regression": False, "window": 64}
    frame = ("1a 02 0e 0f 67 73 64 6e 65 74 2d 69 65 6d 6f 63 61 70 36 05 30 2e 31 2e 30 02 1e 80 03 01 2f 06 03 68 61"
             " 70 03 73 61 64 03 6e 65 75 03 61 6e 67 03 65 78 63 03 66 72 75 06 40 39 ec 91 c8 00")
    check_doc_frame(g.MODEL_INFO, info, frame, 0xC891EC39)
    check_doc_frame(g.MODEL_INFO_REQUEST, {}, "07 02 0d c0 0c 5e 0d 00", 0x0D5E0CC0)
    reject = {"reason": "UnknownVersion", "detail": "protocol version 1 is not supported: this daemon speaks version 2"}
    frame = ("4a 02 0f 03 41 70 72 6f 74 6f 63 6f 6c 20 76 65 72 73 69 6f 6e 20 31 20 69 73 20 6e 6f 74 20 73 75 70 70"
             " 6f 72 74 65 64 3a 20 74 68 69 73 20 64 61 65 6d 6f 6e 20 73 70 65 61 6b 73 20 76 65 72 73 69 6f 6e 20 32"
             " 98 eb 90 a9 00")
    check_doc_frame(g.REJECT, reject, frame, 0xA990EB98)
    # The v1 StatusRequest the document shows being refused.
    assert g.frame(g.status_request(), version=1) == h("07 01 06 8b 86 a1 b1 00")


TRANSCRIPT = {"conversation": "c1", "utterance": 3, "speaker": 1, "timestamp_us": 0, "text": "Hi \u00e9!"}
TRANSCRIPT_FRAME = "08 02 10 02 63 31 03 01 0c 06 48 69 20 c3 a9 21 eb 86 51 27 00"


def test_transcript_example_bytes():
    check_doc_frame(g.TRANSCRIPT, TRANSCRIPT, TRANSCRIPT_FRAME, 0x275186EB)
    assert g.frame(g.transcript("c1", 3, 1, 0, "Hi \u00e9!")) == h(TRANSCRIPT_FRAME)
    # Text is UTF-8 of at most MAX_TRANSCRIPT bytes: longer is refused when sending,
    # Malformed when received, and so is a byte string that is not UTF-8.
    g.transcript("c", 0, 0, 0, "\u00e9" * (g.MAX_TRANSCRIPT // 2))
    try:
        g.transcript("c", 0, 0, 0, "\u00e9" * (g.MAX_TRANSCRIPT // 2) + "x")
        raise AssertionError("a 2049-byte transcript was encoded")
    except ValueError:
        pass
    head = bytes([g.TRANSCRIPT]) + g.string("c1") + bytes([3, 1, 0])
    for text in (b"\xc3\x28", b"\xff", "x".encode() * (g.MAX_TRANSCRIPT + 1)):
        try:
            g.decode_frame(g.frame(head + g.varint(len(text)) + text)[:-1])
            raise AssertionError(f"transcript {text[:8]!r} decoded")
        except g.ProtocolError as e:
            assert e.reason == "Malformed"


def random_message(rng, tag):
    """A random message of `tag` within the protocol's bounds."""
    def value(kind):
        if kind == "u8":
            return rng.randrange(256)
        if kind == "varint":
            return rng.choice([0, 1, 127, 128, 300, 2 ** 32 - 1, rng.randrange(2 ** 16)])
        if kind == "f32":
            return struct.unpack("<f", struct.pack("<f", rng.uniform(-100, 100)))[0]
        if kind == "bool":
            return rng.random() < 0.5
        if kind == "modality":
            return rng.choice(g.MODALITIES)
        if kind == "reason":
            return rng.choice(g.REJECT_REASONS)
        if kind == "rejected":
            return {r: rng.randrange(1, 1000) for r in rng.sample(g.REJECT_REASONS, rng.randrange(4))}
        if kind[0] == "str":
            n = rng.randrange((kind[1] or 40) + 1)
            return "".join(rng.choice("abcxyz-_ 0123é") for _ in range(n)).encode()[: kind[1] or 40].decode(errors="ignore")
        if kind[0] == "vec":
            return [value(kind[1]) for _ in range(rng.randrange(min(kind[2] or 5, 70) + 1))]
        if kind[0] == "opt":
            return None if rng.random() < 0.5 else value(kind[1])
        return {name: value(t) for name, t in kind[1]}
    return value(("struct", g.SCHEMA[tag]))


def test_every_message_round_trips():
    rng = random.Random(11)
    for tag in g.SCHEMA:
        for _ in range(30):
            msg = random_message(rng, tag)
            f = g.frame(g.encode(tag, msg))
            assert 0 not in f[:-1] and len(f) <= g.MAX_FRAME_LEN
            assert g.decode_frame(f[:-1]) == (tag, msg), (tag, msg)


def test_six_classes_and_long_vectors_round_trip():
    vals = [struct.unpack("<f", struct.pack("<f", i / 7.0))[0] for i in range(1024)]
    f = g.frame(g.features("ses", 1, 1, "audio", 5, vals))
    assert len(f) <= g.MAX_FRAME_LEN
    assert g.decode_frame(f[:-1])[1]["values"] == vals
    names = ["hap", "sad", "neu", "ang", "exc", "fru"]
    utts = [{"utterance": i, "avail": 3, "label": i % 6, "label_name": names[i % 6],
             "probs": [0.125] * 4 + [0.25, 0.25], "reg": None} for i in range(12)]
    r = {"conversation": "ses", "closed_utterance": 11, "completion": "gsdnet", "latency_us": 5, "utterances": utts}
    assert g.decode_frame(g.frame(g.encode(g.RESULT, r))[:-1]) == (g.RESULT, r)
    # Bounds: 65 probabilities, a 33-byte class name, 2049 values are Malformed.
    for bad in ({**utts[0], "probs": [0.0] * 65}, {**utts[0], "label_name": "x" * 33}):
        body = g.encode(g.RESULT, {**r, "utterances": [bad]})
        try:
            g.decode_frame(g.frame(body)[:-1])
            raise AssertionError("out-of-bounds result decoded")
        except g.ProtocolError as e:
            assert e.reason == "Malformed"
    try:
        g.decode_frame(g.frame(g.features("c", 0, 0, "text", 0, [0.0] * 2049))[:-1])
        raise AssertionError("2049 values decoded")
    except g.ProtocolError as e:
        assert e.reason == "Malformed"


def test_decode_round_trip_and_errors():
    tag, msg = g.decode_frame(DOC_FRAME[:-1])
    assert tag == g.FEATURES and msg["values"] == [1.0, -2.0] and msg["utterance"] == 300
    bad = bytearray(DOC_FRAME[:-1])
    bad[12] ^= 0x40
    try:
        g.decode_frame(bytes(bad))
        raise AssertionError("corrupt frame decoded")
    except g.ProtocolError as e:
        assert e.reason in ("Crc", "Framing")
    for version in (1, 3):
        try:
            g.decode_frame(g.frame(g.subscribe(), version=version)[:-1])
            raise AssertionError(f"version {version} decoded")
        except g.ProtocolError as e:
            assert e.reason == "UnknownVersion"


def test_stream_decoder_handles_split_and_oversized():
    dec = g.FrameDecoder()
    stream = g.frame(g.status_request()) + b"\x11" * (g.MAX_FRAME_LEN + 10) + b"\x00" + DOC_FRAME
    out = []
    for i in range(0, len(stream), 7):
        out += dec.feed(stream[i:i + 7])
    assert out[0] == (g.STATUS_REQUEST, {})
    assert isinstance(out[1], g.ProtocolError) and out[1].reason == "Oversized"
    assert out[2][0] == g.FEATURES


def test_cobs_long_runs():
    for n in (253, 254, 255, 508, 1000):
        data = bytes((i % 255) + 1 for i in range(n))
        assert g.cobs_decode(g.cobs_encode(data)) == data
        data0 = data + b"\x00" + data
        assert g.cobs_decode(g.cobs_encode(data0)) == data0


class Live:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(20)
        self.sock.connect(path)
        self.dec = g.FrameDecoder()
        self.queue = []

    def send(self, raw):
        self.sock.sendall(raw)

    def next(self, tag=None):
        while True:
            while self.queue:
                item = self.queue.pop(0)
                assert not isinstance(item, g.ProtocolError), item
                if tag is None or item[0] == tag:
                    return item if tag is None else item[1]
            data = self.sock.recv(65536)
            assert data, "daemon closed the connection"
            self.queue += self.dec.feed(data)

    def status(self):
        self.send(g.frame(g.status_request()))
        return self.next(g.STATUS)

    def model(self):
        self.send(g.frame(g.model_info_request()))
        return self.next(g.MODEL_INFO)


def live_path(var="GSDNET_SOCKET"):
    return os.environ.get(var)


def skip_without(var):
    if not live_path(var):
        import pytest
        pytest.skip(f"{var} not set")


def test_live_daemon_round_trip():
    skip_without("GSDNET_SOCKET")
    path = live_path()
    sub = Live(path)
    sub.send(g.frame(g.subscribe()))
    first = sub.status()
    assert first["engine"] == "mock"
    sizes = {m["modality"]: m["size"] for m in sub.model()["modalities"]}
    assert sizes == {"text": 100, "audio": 73, "visual": 100}
    sensor = Live(path)
    conv = "py-conv"
    # 1.1 encodes without zero bytes: 400-byte runs exercise COBS 255-blocks both ways.
    sensor.send(g.frame(g.reset(conv)))
    sensor.send(g.frame(g.utterance_start(conv, 0, 1, 10)))
    sensor.send(g.frame(g.features(conv, 0, 1, "text", 11, [1.1] * sizes["text"])))
    sensor.send(g.frame(g.features(conv, 0, 1, "audio", 12, [0.5] * sizes["audio"])))
    sensor.send(g.frame(g.dropout(conv, 0, "visual", 13)))
    sensor.send(g.frame(g.utterance_end(conv, 0, 1, 14)))
    result = sub.next(g.RESULT)
    assert result["conversation"] == conv and result["closed_utterance"] == 0
    (u,) = result["utterances"]
    assert u["avail"] == 3 and u["label"] == 1 and u["label_name"] == "positive"
    assert math.isclose(u["reg"], 1.1, rel_tol=1e-6)

    # Bad input: NaN, wrong length, corrupt CRC, a v1 frame; then a good utterance.
    sensor.send(g.frame(g.features(conv, 1, 1, "text", 20, [float("nan")] * 100)))
    sensor.send(g.frame(g.features(conv, 1, 1, "audio", 20, [0.0] * 72)))
    corrupt = bytearray(g.frame(g.features(conv, 1, 1, "visual", 20, [2.0] * 100)))
    corrupt[40] = (corrupt[40] % 254) + 1 if corrupt[40] != 0 else 1
    sensor.send(bytes(corrupt))
    sensor.send(g.frame(g.subscribe(), version=1))
    reject = sensor.next(g.REJECT)
    assert reject["reason"] == "UnknownVersion" and "version 2" in reject["detail"], reject
    for m in g.MODALITIES:
        sensor.send(g.frame(g.features(conv, 1, 1, m, 21, [2.5] * sizes[m])))
    result = sub.next(g.RESULT)
    assert [x["avail"] for x in result["utterances"]] == [3, 7]
    # Utterance 2 closes with no modality (all dropouts): no result, counted in the status.
    assert sub.status()["empty_utterances"] == 0
    for m in g.MODALITIES:
        sensor.send(g.frame(g.dropout(conv, 2, m, 30)))
    sensor.send(g.frame(g.features(conv, 3, 1, "text", 31, [0.5] * 100)))
    for m in ("audio", "visual"):
        sensor.send(g.frame(g.dropout(conv, 3, m, 31)))
    result = sub.next(g.RESULT)
    assert [x["utterance"] for x in result["utterances"]] == [0, 1, 3]
    status = sub.status()
    assert status["empty_utterances"] == 1, status
    rejected = status["rejected"]
    assert rejected.get("NonFinite") == 1, rejected
    assert rejected.get("WrongLength") == 1, rejected
    assert rejected.get("UnknownVersion") == 1, rejected
    assert rejected.get("Crc", 0) + rejected.get("Framing", 0) == 1, rejected


def test_live_text_audio_six_classes():
    skip_without("GSDNET_SOCKET_TA")
    path = live_path("GSDNET_SOCKET_TA")
    sub = Live(path)
    info = sub.model()
    assert info["modalities"] == [{"modality": "text", "size": 384}, {"modality": "audio", "size": 47}]
    assert info["classes"] == ["hap", "sad", "neu", "ang", "exc", "fru"] and not info["has_regression"]
    sub.send(g.frame(g.subscribe_scored()))
    sub.status()
    sensor = Live(path)
    conv = "Ses01F_impro01"
    sensor.send(g.frame(g.utterance_start(conv, 5, 1, 0)))
    sensor.send(g.frame(g.features(conv, 5, 1, "visual", 1, [0.5] * 100)))  # no such modality
    sensor.send(g.frame(g.dropout(conv, 5, "visual", 1)))  # nor a dropout of it
    sensor.send(g.frame(g.features(conv, 5, 1, "text", 1, [0.5] * 384)))
    sensor.send(g.frame(g.features(conv, 5, 1, "audio", 1, [0.5] * 47)))
    r = sub.next(g.SCORED)
    (u,) = r["utterances"]
    assert (u["avail"], u["label"], u["label_name"], len(u["probs"]), u["reg"]) == (3, 5, "fru", 6, None), u
    assert u["confidence"] == 0.5
    assert sub.status()["rejected"] == {"NoSuchModality": 2}


if __name__ == "__main__":
    tests = [v for k, v in sorted(globals().items()) if k.startswith("test_")]
    live = {test_live_daemon_round_trip: "GSDNET_SOCKET", test_live_text_audio_six_classes: "GSDNET_SOCKET_TA"}
    for t in tests:
        if t in live and not live_path(live[t]):
            print(f"{t.__name__} skipped: {live[t]} not set")
            continue
        t()
        print(f"ok {t.__name__}")
