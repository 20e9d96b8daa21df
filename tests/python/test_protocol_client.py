"""Protocol tests of the Python reference client (scripts/gsdnet_client.py), standard library only.

Offline tests check the byte layout of docs/PROTOCOL.md. Live tests talk to a daemon whose Unix
socket is in GSDNET_SOCKET (tests/daemon_python.rs starts one with a mock runner and runs this
file); they are skipped without it. Runs under pytest or as a plain script.
"""

import math
import os
import socket
import struct
import sys
import zlib

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts"))
import gsdnet_client as g  # noqa: E402

DOC_FRAME = bytes.fromhex("02010a026331ac0202020102010380 3f010106c039b47b6b00".replace(" ", ""))


def test_worked_example_bytes():
    f = g.frame(g.features("c1", 300, 2, "visual", 1, [1.0, -2.0]))
    assert f == DOC_FRAME
    body = bytes([1, 0, 2]) + b"c1" + bytes([0xAC, 2, 2, 2, 1, 2]) + struct.pack("<2f", 1.0, -2.0)
    assert zlib.crc32(body) == 0x6B7BB439


STATUS_FRAME = bytes.fromhex(
    "0c 01 07 dc 0b 04 6d 6f 63 6b 07 02 01 01 02 02 0c 04 01 02 01 03 01 01 01 5b bb 7a 00")


def test_status_example_bytes():
    body = bytes([1, 7, 0xDC, 0x0B, 4]) + b"mock" + bytes([7, 2, 0, 0, 0, 2, 0, 4, 1, 2, 1, 3, 1, 1])
    assert zlib.crc32(body) == 0x7ABB5B01
    assert g.frame(body[1:]) == STATUS_FRAME
    tag, msg = g.decode_frame(STATUS_FRAME[:-1])
    assert tag == g.STATUS
    assert msg == {"uptime_ms": 1500, "engine": "mock", "frames_accepted": 7, "windows_run": 2,
                   "windows_superseded": 0, "windows_dropped": 0, "inference_errors": 0,
                   "results_published": 2, "queue_len": 0, "queue_capacity": 4,
                   "open_conversations": 1, "clients": 2, "rejected": {"UnknownVersion": 1},
                   "empty_utterances": 1}
    try:
        g.decode_frame(g.frame(body[1:-1])[:-1])  # a report without the last field
        raise AssertionError("truncated status decoded")
    except g.ProtocolError as e:
        assert e.reason == "Malformed"


HEALTH_FRAME = bytes.fromhex(
    "05 01 0a 01 02 03 03 04 06 05 06 01 ac 02 06 01 ce 08 56 f1 00")


def test_health_example_bytes():
    body = bytes([1, 10, 1, 2, 0, 3, 4, 0, 5, 6, 1, 0xAC, 2, 0, 1])
    assert zlib.crc32(body) == 0xF15608CE
    assert g.frame(body[1:]) == HEALTH_FRAME
    assert g.frame(g.health_request()) == bytes.fromhex("07 01 09 1a 9b 1e 21 00")
    tag, msg = g.decode_frame(HEALTH_FRAME[:-1])
    assert tag == g.HEALTH
    assert msg == {"conversation_restarts": 1, "late_replayed": 2, "conversations_evicted": 0,
                   "utterances_flushed": 3, "connections_open": 4, "connections_refused": 0,
                   "connections_evicted": 5, "connections_idle_closed": 6,
                   "slow_clients_disconnected": 1, "results_lost": 300,
                   "consecutive_inference_errors": 0, "watchdog_stopped": True}


SCORED_FRAME = bytes.fromhex(
    "10 01 0c 02 63 31 03 06 67 73 64 6e 65 74 b0 09 01 08 40 3f 01 03 05 01 02 01 03 80 3e 01 03"
    " 40 3f 01 01 02 3f 01 03 40 3f 05 ff 76 fb 63 00")


def test_scored_example_bytes():
    f32 = lambda x: struct.pack("<f", x)  # noqa: E731
    body = (bytes([1, 12]) + g.string("c1") + g.varint(3) + g.string("gsdnet") + g.varint(1200) + f32(0.75)
            + bytes([1, 3, 5, 1, 2]) + f32(0.25) + f32(0.75) + f32(0.5) + f32(0.75) + bytes([0]))
    assert zlib.crc32(body) == 0x63FB76FF
    assert g.frame(body[1:]) == SCORED_FRAME
    assert g.frame(g.subscribe_scored()) == bytes.fromhex("07 01 0b 36 fa 10 cf 00")
    tag, msg = g.decode_frame(SCORED_FRAME[:-1])
    assert tag == g.SCORED
    assert msg == {"conversation": "c1", "closed_utterance": 3, "completion": "gsdnet",
                   "latency_us": 1200, "abstain_below": 0.75,
                   "utterances": [{"utterance": 3, "avail": 5, "label": 1, "probs": [0.25, 0.75],
                                   "reg": 0.5, "confidence": 0.75, "uncertain": False}]}


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
    v2 = g.frame(g.subscribe(), version=2)
    try:
        g.decode_frame(v2[:-1])
        raise AssertionError("version 2 decoded")
    except g.ProtocolError as e:
        assert e.reason == "UnknownVersion"


def test_stream_decoder_handles_split_and_oversized():
    dec = g.FrameDecoder()
    stream = g.frame(g.status_request()) + b"\x11" * 5000 + b"\x00" + DOC_FRAME
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

    def next(self, tag):
        while True:
            while self.queue:
                item = self.queue.pop(0)
                assert not isinstance(item, g.ProtocolError), item
                if item[0] == tag:
                    return item[1]
            data = self.sock.recv(65536)
            assert data, "daemon closed the connection"
            self.queue += self.dec.feed(data)

    def status(self):
        self.send(g.frame(g.status_request()))
        return self.next(g.STATUS)


def live_path():
    return os.environ.get("GSDNET_SOCKET")


def test_live_daemon_round_trip():
    path = live_path()
    if not path:
        import pytest
        pytest.skip("GSDNET_SOCKET not set")
    sub = Live(path)
    sub.send(g.frame(g.subscribe()))
    first = sub.status()
    assert first["engine"] == "mock"
    sensor = Live(path)
    conv = "py-conv"
    # 1.1 encodes without zero bytes: 400-byte runs exercise COBS 255-blocks both ways.
    sensor.send(g.frame(g.reset(conv)))
    sensor.send(g.frame(g.utterance_start(conv, 0, 1, 10)))
    sensor.send(g.frame(g.features(conv, 0, 1, "text", 11, [1.1] * 100)))
    sensor.send(g.frame(g.features(conv, 0, 1, "audio", 12, [0.5] * 73)))
    sensor.send(g.frame(g.dropout(conv, 0, "visual", 13)))
    sensor.send(g.frame(g.utterance_end(conv, 0, 1, 14)))
    result = sub.next(g.RESULT)
    assert result["conversation"] == conv and result["closed_utterance"] == 0
    (u,) = result["utterances"]
    assert u["avail"] == 3 and u["label"] == 1
    assert math.isclose(u["reg"], 1.1, rel_tol=1e-6)

    # Bad input: NaN, wrong length, corrupt CRC, unknown version; then a good utterance.
    sensor.send(g.frame(g.features(conv, 1, 1, "text", 20, [float("nan")] * 100)))
    sensor.send(g.frame(g.features(conv, 1, 1, "audio", 20, [0.0] * 72)))
    corrupt = bytearray(g.frame(g.features(conv, 1, 1, "visual", 20, [2.0] * 100)))
    corrupt[40] = (corrupt[40] % 254) + 1 if corrupt[40] != 0 else 1
    sensor.send(bytes(corrupt))
    sensor.send(g.frame(g.subscribe(), version=9))
    for m in g.MODALITIES:
        sensor.send(g.frame(g.features(conv, 1, 1, m, 21, [2.5] * g.DIMS[m])))
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


if __name__ == "__main__":
    tests = [v for k, v in sorted(globals().items()) if k.startswith("test_")]
    if not live_path():
        tests.remove(test_live_daemon_round_trip)
    for t in tests:
        t()
        print(f"ok {t.__name__}")
    if not live_path():
        print("live test skipped: GSDNET_SOCKET not set")
