"""Notices and limits (tags 17-21) in the Python reference client: the byte layouts of the worked
examples in docs/PROTOCOL.md ("Notices and limits"; tests/integration/protocol/notices.rs checks
the same bytes) and the sender's ledger (gsdnet_client.ledger)."""

import zlib

import gsdnet_client as g
from gsdnet_client.ledger import Ledger


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


NOTICE = {"reason": "Flood", "conversation": "s1", "utterance": 7, "count": 412, "detail": "Features over the frame rate"}


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
