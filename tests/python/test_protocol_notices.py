"""Notices and limits (tags 17-21) in the Python reference client: the byte layouts of the worked
examples in docs/PROTOCOL.md ("Notices and limits"; tests/integration/protocol/notices.rs checks
the same bytes), the sender's ledger (gsdnet_client.ledger), and a live run against the release
daemon (tiny fixture model; skipped when the binary is not built): notices of a sender's Late,
WrongLength and Flood come before the answer to its next request and add up to the daemon's
counters."""

import os
import socket
import subprocess
import time
import zlib
from pathlib import Path

import gsdnet_client as g
import pytest
from gsdnet_client.ledger import Ledger

from conftest import ROOT


def h(s):
    return bytes.fromhex(s.replace(" ", "").replace("\n", ""))


def check_doc_frame(tag, msg, frame, crc):
    body = g.encode(tag, msg)
    assert zlib.crc32(bytes([g.PROTOCOL_VERSION]) + body) == crc
    assert g.frame(body) == h(frame), g.frame(body).hex(" ")
    assert g.decode_frame(h(frame)[:-1]) == (tag, msg)


def test_conversation_end_and_requests_bytes():
    check_doc_frame(g.CONVERSATION_END, {"conversation": "s1"}, "0a 02 11 02 73 31 e6 6a 0f 02 00", 0x020F6AE6)
    assert g.conversation_end("s1") == g.encode(g.CONVERSATION_END, {"conversation": "s1"})
    check_doc_frame(g.SUBSCRIBE_NOTICES, {}, "07 02 12 35 01 56 80 00", 0x80560135)
    check_doc_frame(g.LIMITS_REQUEST, {}, "03 02 14 04 a4 35 69 00", 0x6935A400)
    assert g.frame(g.subscribe_notices()) == h("07 02 12 35 01 56 80 00")
    assert g.frame(g.limits_request()) == h("03 02 14 04 a4 35 69 00")


NOTICE = {"reason": "Flood", "conversation": "s1", "utterance": 7, "count": 412,
          "detail": "Features over the frame rate"}


def test_notice_bytes():
    frame = ("2c 02 13 0b 02 73 31 01 07 9c 03 1c 46 65 61 74 75 72 65 73 20 6f 76 65 72 20 74 68 65"
             " 20 66 72 61 6d 65 20 72 61 74 65 1e d1 6e 4d 00")
    check_doc_frame(g.NOTICE, NOTICE, frame, 0x4D6ED11E)
    none = dict(NOTICE, conversation="", utterance=None)
    assert g.decode_frame(g.frame(g.encode(g.NOTICE, none))[:-1]) == (g.NOTICE, none)


LIMITS = {"max_frames_per_second": 1000, "burst": 400, "total_frames_per_second": 2000, "total_burst": 1600,
          "max_conversations": 8, "max_open_utterances": 16, "evict_idle_ms": 10000, "idle_conversation_ms": 600000,
          "max_utterance_ms": 30000,
          "deadlines": [{"modality": "text", "deadline_ms": 600}, {"modality": "audio", "deadline_ms": 300}],
          "window": 64, "queue_capacity": 8, "idle_timeout_ms": 10000, "outgoing_queue": 64, "notice_interval_ms": 100}


def test_limits_bytes():
    frame = ("16 02 15 e8 07 90 03 d0 0f c0 0c 08 10 90 4e c0 cf 24 b0 ea 01 02 10 d8 04 01 ac 02 40"
             " 08 90 4e 40 64 50 d7 d3 59 00")
    check_doc_frame(g.LIMITS, LIMITS, frame, 0x59D3D750)


def result(conversation, ids):
    return {"conversation": conversation, "closed_utterance": ids[-1], "completion": "gsdnet", "latency_us": 1,
            "utterances": [{"utterance": i, "avail": 3, "label": 0, "label_name": "hap", "probs": [1.0],
                            "reg": None} for i in ids]}


def test_ledger_counts_covered_and_refused():
    led = Ledger()
    for i in range(4):
        led.sent("a", i)
    led.sent("a", 4, with_data=False)
    led.sent("b", 0)
    assert led.on_message(g.RESULT, result("a", [0, 1, 2]))
    assert led.on_message(g.RESULT, result("zzz", [3]))  # another conversation covers nothing here
    assert not led.on_message(g.STATUS, {})
    assert (led.n_sent(), led.n_expected(), led.n_covered()) == (6, 5, 3)
    assert led.uncovered("a") == {3}
    assert led.uncovered() == {("a", 3), ("b", 0)}
    assert led.exit_code() == 1
    assert led.in_flight() == 2
    led.write_off()
    assert led.in_flight() == 0
    led.on_message(g.RESULT, result("a", [1, 2, 3]))
    led.on_message(g.SCORED, result("b", [0]))
    assert led.exit_code() == 0
    led.on_message(g.NOTICE, NOTICE)
    led.on_message(g.NOTICE, dict(NOTICE, count=3))
    assert led.refused == {"Flood": 415}
    assert led.exit_code() == 1
    text = "\n".join(led.lines())
    assert "covered by a result: 5 of 5" in text and "Flood 415" in text and "without any modality" in text


# ---- live: the release daemon (tiny fixture model) ------------------------------------------

BINARY = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release" / "gsdnet"


@pytest.fixture
def tiny_daemon(tmp_path):
    if not BINARY.exists():
        pytest.skip(f"{BINARY} not built (cargo build --release)")
    sock = tmp_path / "d.sock"
    board = tmp_path / "board.toml"
    board.write_text(
        '[board]\nname = "test"\n[engine]\nbackend = "tract"\n'
        f'models = "{ROOT / "tests" / "fixtures" / "tiny-model"}"\nqueue_capacity = 8\n'
        "[assembly]\nwindow = 8\ndeadline_ms = { text = 300, audio = 300, visual = 300 }\nmax_utterance_ms = 10000\n"
        "max_open_utterances = 8\nmax_conversations = 8\nidle_conversation_ms = 600000\n"
        f'[inputs]\nunix = ["{sock}"]\nmax_frames_per_second = 50\nburst = 20\n')
    proc = subprocess.Popen([str(BINARY), "serve", "--board", str(board)], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=dict(os.environ, RUST_LOG="error"))
    try:
        deadline = time.monotonic() + 60
        while not sock.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "gsdnet serve did not start"
            time.sleep(0.05)
        yield sock
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def until(s, dec, tag):
    """Every message received up to the first with `tag` (included)."""
    out = []
    while not out or out[-1][0] != tag:
        data = s.recv(65536)
        assert data, "daemon closed the connection"
        out += [m for m in dec.feed(data) if not isinstance(m, g.ProtocolError)]
    return out


def test_live_notices_come_before_the_answer_and_add_up(tiny_daemon):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(tiny_daemon))
    s.settimeout(10)
    dec = g.FrameDecoder()
    s.sendall(g.frame(g.limits_request()))
    (tag, limits), = until(s, dec, g.LIMITS)
    assert (limits["max_frames_per_second"], limits["burst"], limits["queue_capacity"]) == (50, 20, 8)
    assert [d["modality"] for d in limits["deadlines"]] == ["text", "audio", "visual"]
    frames = g.frame(g.subscribe_notices())
    for m, n in (("text", 100), ("audio", 73), ("visual", 100)):
        frames += g.frame(g.features("live", 0, 0, m, 0, [0.5] * n))
    frames += g.frame(g.features("live", 0, 0, "text", 0, [0.5] * 100))  # utterance 0 closed: Late
    frames += g.frame(g.features("live", 1, 0, "audio", 0, [0.5] * 70))  # WrongLength
    frames += b"".join(g.frame(g.utterance_start("live", 2 + i)) for i in range(40))  # over the burst: Flood
    s.sendall(frames)
    time.sleep(0.5)  # room in the bucket for the closing request
    s.sendall(g.frame(g.limits_request()))
    got = until(s, dec, g.LIMITS)
    led = Ledger()
    for tag, msg in got:
        led.on_message(tag, msg)
    assert {"Late", "WrongLength", "Flood"} <= set(led.refused), got
    assert (led.refused["Late"], led.refused["WrongLength"]) == (1, 1)
    late = next(n for n in led.notices if n["reason"] == "Late")
    assert (late["conversation"], late["utterance"]) == ("live", 0)
    s.sendall(g.frame(g.status_request()))
    (_, status), = [m for m in until(s, dec, g.STATUS) if m[0] == g.STATUS]
    assert led.refused["Flood"] == status["rejected"]["Flood"] > 0, (led.refused, status["rejected"])
    s.close()
