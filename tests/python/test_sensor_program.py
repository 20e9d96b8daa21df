"""The sensor program (python -m gsdnet_sensor) on a synthetic espeak-ng dialogue: offline
features, live capture through a capture command (a stand-in for arecord that plays the dialogue,
or dies, or does not exist), and the frames it sends to a daemon stand-in that speaks the wire
protocol through gsdnet_client. The run against the real daemon is the end-to-end test of issue 21
(item 2). Skipped without opensmile, espeak-ng or sox."""

import json
import os
import socket
import subprocess
import sys
import threading

import gsdnet_client as g
import numpy as np
import pytest

from gsdnet_sensor import synth

pytest.importorskip("opensmile", reason="opensmile (the sensor extra) is not installed")
pytestmark = pytest.mark.skipif(bool(synth.tools_missing()),
                                reason=f"not installed: {synth.tools_missing()} (apt-get install espeak-ng sox)")


@pytest.fixture(scope="module")
def dialogue(tmp_path_factory):
    d = tmp_path_factory.mktemp("dialogue")
    wav, seg = synth.write_dialogue(d)
    raw = d / "dialogue.raw"
    subprocess.run(["sox", str(wav), "-t", "raw", "-e", "signed", "-b", "16", "-L", str(raw)], check=True)
    return wav, seg, raw


def sensor(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "gsdnet_sensor", *map(str, args)], capture_output=True,
                          text=True, timeout=120, input=stdin)


def boundaries(seg):
    import csv
    return "".join(json.dumps(r) + "\n" for r in csv.DictReader(open(seg)))


def test_offline_wav_with_a_dead_microphone_span(dialogue, tmp_path):
    wav, seg, _ = dialogue
    out = tmp_path / "f.f32"
    r = sensor("wav", wav, "--segments", seg, "--offline", "--drop-audio", "7.6-9.0", "--features-out", out)
    assert r.returncode == 0, r.stderr
    v = np.fromfile(out, "<f4").reshape(-1, 47)
    assert v.shape == (4, 47)
    assert np.isnan(v[2]).all() and np.isfinite(v[[0, 1, 3]]).all()
    assert "microphone dropout" in r.stdout and "audio missing: 1" in r.stdout


def test_live_endpointer_cuts_the_dialogue(dialogue):
    _, _, raw = dialogue
    r = sensor("live", "--offline", "--conversation", "live1", "--capture-cmd", f"cat {raw}", "--duration", "14.8")
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("utterance ")]
    assert len(lines) == 4 and not any("missing" in ln for ln in lines), r.stdout


def test_live_microphone_fails_midway_audio_is_missing(dialogue):
    wav, seg, raw = dialogue
    n = int(7.5 * 16000) * 2  # the microphone delivers 7.5 s, then its stream ends
    r = sensor("live", "--offline", "--conversation", "live2", "--capture-cmd", f"head -c {n} {raw}",
               "--boundaries", "-", stdin=boundaries(seg))
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("utterance ")]
    assert len(lines) == 4
    assert "missing" not in lines[0] + lines[1]
    assert all("missing: not captured" in ln for ln in lines[2:])


def test_absent_microphone(dialogue):
    _, seg, _ = dialogue
    r = sensor("live", "--offline", "--conversation", "live3", "--capture-cmd", "/nonexistent/arecord",
               "--boundaries", "-", stdin=boundaries(seg))
    assert r.returncode == 0 and r.stdout.count("missing: not captured") == 4, r.stdout + r.stderr
    r = sensor("live", "--offline", "--conversation", "live3", "--capture-cmd", "/nonexistent/arecord")
    assert r.returncode == 3 and "cannot start" in r.stdout


def test_bad_input_is_a_clear_error(dialogue, tmp_path):
    wav, seg, _ = dialogue
    bad = tmp_path / "bad.csv"
    bad.write_text("start_s,end_s\n0,1\n")
    r = sensor("wav", wav, "--segments", bad, "--offline")
    assert r.returncode == 2 and "header lacks" in r.stderr
    r = sensor("wav", seg, "--segments", seg, "--offline")
    assert r.returncode == 2 and "gsdnet-sensor:" in r.stderr
    r = sensor("wav", wav, "--segments", seg, "--unix", str(tmp_path / "no.sock"))
    assert r.returncode == 2 and "cannot reach the daemon" in r.stderr


class DaemonStandIn(threading.Thread):
    """Answers ModelInfo (text 300 / audio 47, six classes) and LimitsRequest (the x86 profile's),
    publishes a Result for each utterance that carried a transcript or audio, records every
    message. `refused` ({reason: count}) is noticed before the answer to the closing
    LimitsRequest, as the daemon notices refusals before the answer to a later request."""

    LIMITS = {"max_frames_per_second": 1000, "burst": 400, "total_frames_per_second": 2000, "total_burst": 1600,
              "max_conversations": 8, "max_open_utterances": 16, "evict_idle_ms": 10000,
              "idle_conversation_ms": 600000, "max_utterance_ms": 30000,
              "deadlines": [{"modality": "text", "deadline_ms": 600}, {"modality": "audio", "deadline_ms": 300}],
              "window": 64, "queue_capacity": 8, "idle_timeout_ms": 10000, "outgoing_queue": 64,
              "notice_interval_ms": 100}

    def __init__(self, path, refused=None):
        super().__init__(daemon=True)
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(1)
        self.messages, self.refused, self.limits_requests = [], refused or {}, 0

    def answer(self, tag, msg):
        if tag == g.MODEL_INFO_REQUEST:
            return [(g.MODEL_INFO, {"name": "stand-in", "version": "0", "modalities": [
                {"modality": "text", "size": 300}, {"modality": "audio", "size": 47}],
                "classes": ["hap", "sad", "neu", "ang", "exc", "fru"], "has_regression": False, "window": 64})]
        if tag == g.LIMITS_REQUEST:
            self.limits_requests += 1
            notices = [] if self.limits_requests == 1 else [
                (g.NOTICE, {"reason": k, "conversation": "dlg", "utterance": 1, "count": n, "detail": "stand-in"})
                for k, n in self.refused.items()]
            return notices + [(g.LIMITS, self.LIMITS)]
        carried = {t for t, m in self.messages if m.get("utterance") == msg.get("utterance") and t in (g.FEATURES, g.TRANSCRIPT)}
        if tag == g.UTT_END and carried:
            avail = (1 if g.TRANSCRIPT in carried else 0) + (2 if g.FEATURES in carried else 0)
            u = {"utterance": msg["utterance"], "avail": avail, "label": 2, "label_name": "neu",
                 "probs": [0.1, 0.1, 0.5, 0.1, 0.1, 0.1], "reg": None}
            return [(g.RESULT, {"conversation": msg["conversation"], "closed_utterance": msg["utterance"],
                                "completion": "gsdnet", "latency_us": 1, "utterances": [u]})]
        return []

    def run(self):
        conn, _ = self.server.accept()
        dec = g.FrameDecoder()
        while data := conn.recv(65536):
            for tag, msg in dec.feed(data):
                self.messages.append((tag, msg))
                for reply in self.answer(tag, msg):
                    conn.sendall(g.frame(g.encode(*reply)))


def test_frames_sent_to_the_daemon(dialogue, tmp_path):
    wav, seg, _ = dialogue
    d = DaemonStandIn(tmp_path / "d.sock")
    d.start()
    r = sensor("wav", wav, "--segments", seg, "--unix", tmp_path / "d.sock", "--drop-audio", "7.6-9.0",
               "--conversation", "dlg1", "--wait", "2")
    assert r.returncode == 0, r.stdout + r.stderr
    sent = [(t, m.get("utterance"), m.get("modality")) for t, m in d.messages]
    assert [t for t, _, _ in sent[:4]] == [g.MODEL_INFO_REQUEST, g.LIMITS_REQUEST, g.SUBSCRIBE_NOTICES, g.SUBSCRIBE]
    for u in range(4):
        audio = (g.DROPOUT, u, "audio") if u == 2 else (g.FEATURES, u, "audio")
        assert [s for s in sent if s[1] == u] == [(g.TRANSCRIPT, u, None), audio, (g.UTT_END, u, None)]
    texts = [m["text"] for t, m in d.messages if t == g.TRANSCRIPT]
    assert len(texts) == 4 and all(texts), texts  # the segments' transcripts
    feats = [m for t, m in d.messages if t == g.FEATURES]
    assert all(len(m["values"]) == 47 and m["conversation"] == "dlg1" for m in feats)
    assert [m["speaker"] for m in feats] == [0, 1, 1]  # A, B, (A dropped), B
    assert [t for t, _, _ in sent[-2:]] == [g.CONVERSATION_END, g.LIMITS_REQUEST]
    assert d.messages[-2][1] == {"conversation": "dlg1"}
    assert "results received: 4 of 4 utterances covered" in r.stdout
    assert "refused by the daemon: none" in r.stdout


def test_refusals_make_the_exit_status_fail(dialogue, tmp_path):
    wav, seg, _ = dialogue
    d = DaemonStandIn(tmp_path / "d.sock", refused={"Flood": 5, "Late": 2})
    d.start()
    r = sensor("wav", wav, "--segments", seg, "--unix", tmp_path / "d.sock", "--wait", "2")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "refused by the daemon: Flood 5, Late 2" in r.stdout, r.stdout
    assert "notice: Flood x5 (dlg utterance 1): stand-in" in r.stdout, r.stdout
    assert os.path.exists(tmp_path / "d.sock")
