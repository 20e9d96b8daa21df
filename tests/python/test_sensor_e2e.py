"""End to end (issue 21 item 2): a two-speaker dialogue spoken by espeak-ng, the release daemon
(`gsdnet serve`, the x86 profile on a temporary Unix socket) serving models/gsdnet-iemocap6, and the
sensor program sending each utterance's transcript and 47 audio values, with the microphone dead
for part of the dialogue. Every utterance gets one labelled result; the daemon completes the audio
of the dropped span (its results' availability bits say text only), and the sensor reports every
utterance covered, nothing refused, exit status 0.

Skipped without opensmile, espeak-ng or sox, and (saying what is missing) while the release binary
or the model's text frontend (models/frontends, scripts/setup-frontends.sh) is not there."""

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import gsdnet_client as g
import pytest

from conftest import ROOT
from gsdnet_sensor import synth
from gsdnet_sensor.segments import load_segments

pytest.importorskip("opensmile", reason="opensmile (the sensor extra) is not installed")
pytestmark = pytest.mark.skipif(bool(synth.tools_missing()),
                                reason=f"not installed: {synth.tools_missing()} (apt-get install espeak-ng sox)")

MODEL = ROOT / "models" / "gsdnet-iemocap6"
BINARY = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release" / "gsdnet"
# The microphone is dead over this span: the third line (speaker A, 7.7-11.1 s) falls inside it.
DROP = (7.5, 11.3)


def missing_parts():
    """What the end-to-end run needs and is not there (empty: nothing)."""
    out = []
    if not BINARY.exists():
        out.append(f"{BINARY} (cargo build --release)")
    manifest = (MODEL / "manifest.toml").read_text() if (MODEL / "manifest.toml").exists() else ""
    if "[frontends.text]" not in manifest:
        out.append(f"{MODEL.name} with a text frontend ([frontends.text] in its manifest)")
    elif not (ROOT / "models" / "frontends" / "all-minilm-l6-v2" / "encoder.onnx").exists():
        out.append("models/frontends/all-minilm-l6-v2/encoder.onnx (bash scripts/setup-frontends.sh)")
    return out


def profile(tmp, sock):
    """The x86 profile with its endpoints replaced by the Unix socket `sock`."""
    lines = []
    for line in (ROOT / "boards" / "x86-dev.toml").read_text().splitlines():
        key = line.split("=")[0].strip()
        lines.append("tcp = []" if key == "tcp" else f'unix = ["{sock}"]' if key == "unix" else line)
    path = tmp / "x86-dev.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


class Subscriber(threading.Thread):
    """Collects the latest result of every utterance of `conversation`."""

    def __init__(self, sock, conversation):
        super().__init__(daemon=True)
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.connect(str(sock))
        self.s.settimeout(1.0)
        self.conversation, self.latest, self.ready = conversation, {}, threading.Event()
        self.s.sendall(g.frame(g.subscribe()) + g.frame(g.status_request()))

    def run(self):
        dec = g.FrameDecoder()
        while True:
            try:
                data = self.s.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            if not data:
                return
            for item in dec.feed(data):
                if isinstance(item, g.ProtocolError):
                    continue
                tag, msg = item
                if tag == g.STATUS:
                    self.ready.set()
                elif tag == g.RESULT and msg["conversation"] == self.conversation:
                    for u in msg["utterances"]:
                        self.latest[u["utterance"]] = u


@pytest.fixture
def daemon(tmp_path):
    missing = missing_parts()
    if missing:
        pytest.skip("end to end needs: " + "; ".join(missing))
    sock = tmp_path / "gsdnet.sock"
    proc = subprocess.Popen([str(BINARY), "serve", "--board", str(profile(tmp_path, sock)), "--models", str(MODEL)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, RUST_LOG="warn"))
    try:
        deadline = time.monotonic() + 120
        while not sock.exists():
            assert proc.poll() is None, f"gsdnet serve exited: {proc.stderr.read()}"
            assert time.monotonic() < deadline, "gsdnet serve did not listen within 120 s"
            time.sleep(0.1)
        yield sock
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_spoken_dialogue_end_to_end_with_a_dead_microphone_span(daemon, tmp_path):
    wav, seg = synth.write_dialogue(tmp_path)
    segments = load_segments(seg)
    dropped = {i for i, s in enumerate(segments) if DROP[0] <= s.start_s and s.end_s <= DROP[1]}
    assert dropped, "the drop span must hold a whole utterance"
    sub = Subscriber(daemon, "dialogue-e2e")
    sub.start()
    assert sub.ready.wait(10)
    r = subprocess.run([sys.executable, "-m", "gsdnet_sensor", "wav", str(wav), "--segments", str(seg),
                        "--unix", str(daemon), "--conversation", "dialogue-e2e",
                        "--drop-audio", f"{DROP[0]}-{DROP[1]}", "--wait", "20"],
                       capture_output=True, text=True, timeout=180)
    report = r.stdout + r.stderr
    n = len(segments)
    assert r.returncode == 0, report
    assert f"results received: {n} of {n} utterances covered" in r.stdout, report
    assert "refused by the daemon: none" in r.stdout, report
    deadline = time.monotonic() + 10
    while len(sub.latest) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sorted(sub.latest) == list(range(n)), sub.latest
    classes = {"hap", "sad", "neu", "ang", "exc", "fru"}
    for i, u in sub.latest.items():
        assert u["label_name"] in classes and len(u["probs"]) == 6, u
        # T = 1, A = 2: the dropped span has the transcript only; the daemon completed its audio.
        assert u["avail"] == (1 if i in dropped else 3), (i, u["avail"], report)
