"""The daemon as a ROS 2 node against a DDS that is not its own (issue 22 item 3).

CycloneDDS (PyPI `cyclonedds`, through gsdnet_ros2; loopback only, no multicast) plays the
foreign ROS 2 node; the daemon (`gsdnet serve` built with `--features ros2`, RustDDS) runs on a
temporary board profile (boards/x86-dev.toml, one Unix socket, plus a `[ros2]` table on a random
domain id per test so parallel runs do not meet). Cases:

- the same synthetic conversation over the Unix socket (gsdnet_client, conversation "sock-1")
  and over ROS 2 ("ros-1"), sent an utterance at a time: every window is equal (labels, classes,
  probabilities and confidences within 1e-6, observed bits, utterance ids); the ROS 2 windows
  also carry each utterance's speaker and `completed` = the model's modalities not observed.
  Features for models/gsdnet-mosi; transcripts (the text frontend) for models/gsdnet-iemocap6
  when its frontend files are here.
- bad input over ROS 2 (wrong feature length, NaN, a modality the model lacks, a modality that
  does not exist, an over-long conversation id, a flood): each refused, announced on the
  notices topic with its reason and count, counted in /diagnostics; the daemon stays up.
- SIGTERM with the ROS 2 side active: the daemon exits 0.

The binary comes from $GSDNET_ROS2_BIN (scripts/ci-ros2.sh builds it and sets it); without it
the tests skip, and with it a daemon that refuses the [ros2] table fails them. Without the
cyclonedds wheel (x86_64 only) they skip. Waits are bounded; nothing asserts on time.
"""
import math
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT

pytest.importorskip("cyclonedds", reason="cyclonedds (PyPI wheel, x86_64 only) is not installed")

import gsdnet_client as g  # noqa: E402
from gsdnet_bench.frontend_daemon import frontend_missing  # noqa: E402
from gsdnet_ros2 import msgs  # noqa: E402
from gsdnet_ros2.peer import Event, Session, model_sizes, synthetic_conversation  # noqa: E402

MOSI = ROOT / "models" / "gsdnet-mosi"
IEMOCAP6 = ROOT / "models" / "gsdnet-iemocap6"
WAIT = 30.0  # longest wait for a daemon step (start, discovery, a window, notices)
TOL = 1e-6


def binary() -> Path:
    path = os.environ.get("GSDNET_ROS2_BIN")
    if not path:
        pytest.skip("GSDNET_ROS2_BIN not set (a gsdnet built with --features ros2): run scripts/ci-ros2.sh")
    if not Path(path).is_file():
        pytest.fail(f"GSDNET_ROS2_BIN={path} is not a file")
    return Path(path)


def model_bits(model: Path) -> int:
    return sum(msgs.MODALITY_BITS[m] for m in model_sizes(model))


class Daemon:
    """`gsdnet serve` on a temporary profile: x86-dev with one Unix socket, `model`, the
    per-sender rate `rate` (frames/s, burst) if given, and [ros2] on `domain`."""

    def __init__(self, tmp: Path, model: Path, domain: int, rate: tuple | None = None):
        self.sock = tmp / "gsdnet.sock"
        self.log = tmp / "daemon.log"
        text = (ROOT / "boards" / "x86-dev.toml").read_text()
        text = re.sub(r"^tcp = .*$", "tcp = []", text, flags=re.M)
        text = re.sub(r"^unix = .*$", f'unix = ["{self.sock}"]', text, flags=re.M)
        text = re.sub(r"^models = .*$", f'models = "{model}"', text, flags=re.M)
        if rate:
            text = re.sub(r"^max_frames_per_second = .*$", f"max_frames_per_second = {rate[0]}", text, flags=re.M)
            text = re.sub(r"^burst = .*$", f"burst = {rate[1]}", text, flags=re.M)
        text += (f'\n[ros2]\nenabled = true\ndomain_id = {domain}\nnamespace = "/"\nnode_name = "gsdnet"\n'
                 'interfaces = ["127.0.0.1"]\n')
        self.profile = tmp / "board.toml"
        self.profile.write_text(text)
        env = {k: v for k, v in os.environ.items() if k != "ROS_DOMAIN_ID"}
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([str(binary()), "serve", "--board", str(self.profile)], cwd=ROOT,
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env)
        until = time.monotonic() + WAIT
        while not self.sock.exists():
            if self.proc.poll() is not None:
                pytest.fail(f"gsdnet serve with a [ros2] table exited {self.proc.returncode} before serving:\n"
                            f"{self.tail()}")
            if time.monotonic() > until:
                self.stop()
                pytest.fail(f"gsdnet serve did not open {self.sock} within {WAIT} s:\n{self.tail()}")
            time.sleep(0.05)

    def tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


class SocketClient:
    """One Unix socket connection speaking the daemon's framing (gsdnet_client)."""

    def __init__(self, path: Path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.connect(str(path))
        self.s.settimeout(WAIT)
        self.decoder = g.FrameDecoder()
        self.items: list = []
        self.notices: list = []  # every Notice read, whatever `next` was waiting for

    def send(self, msg) -> None:
        self.s.sendall(g.frame(msg))

    def next(self, want) -> dict:
        """The next message for which `want(tag, msg)` holds (others are dropped)."""
        while True:
            while self.items:
                item = self.items.pop(0)
                if isinstance(item, g.ProtocolError):
                    continue
                if item[0] == g.NOTICE:
                    self.notices.append(item[1])
                if want(*item):
                    return item[1]
            data = self.s.recv(65536)
            if not data:
                raise ConnectionError("the daemon closed the connection")
            self.items += self.decoder.feed(data)

    def status(self) -> dict:
        self.send(g.status_request())
        return self.next(lambda tag, _: tag == g.STATUS)

    def close(self) -> None:
        self.s.close()


def frame_of(e: Event, conversation: str):
    if e.kind == msgs.UTTERANCE_START:
        return g.utterance_start(conversation, e.utterance, e.speaker, e.timestamp_us)
    if e.kind == msgs.UTTERANCE_END:
        return g.utterance_end(conversation, e.utterance, e.speaker, e.timestamp_us)
    if e.kind == msgs.FEATURES:
        return g.features(conversation, e.utterance, e.speaker, e.modality, e.timestamp_us, list(e.values))
    if e.kind == msgs.DROPOUT:
        return g.dropout(conversation, e.utterance, e.modality, e.timestamp_us)
    if e.kind == msgs.TRANSCRIPT:
        return g.transcript(conversation, e.utterance, e.speaker, e.timestamp_us, e.text)
    raise ValueError(e)


def socket_windows(client: SocketClient, conversation: str, utterances: list) -> list:
    """Scored windows of `conversation` over the socket, an utterance at a time (lockstep)."""
    client.send(g.subscribe_scored())
    client.status()  # the subscription is in place once a later request is answered
    out = []
    for events in utterances:
        u = events[-1].utterance
        for e in events:
            client.send(frame_of(e, conversation))
        out.append(client.next(lambda tag, m: tag == g.SCORED and m["conversation"] == conversation
                               and m["closed_utterance"] == u))
    return out


def session(domain: int, daemon: Daemon) -> Session:
    s = Session(domain)
    if not s.wait_matched(WAIT):
        s.close()
        pytest.fail(f"CycloneDDS (loopback, unicast discovery) and the daemon on domain {domain} did not match "
                    f"within {WAIT} s:\n{daemon.tail()}")
    return s


def domain_id() -> int:
    return random.SystemRandom().randint(1, 200)


def assert_same_windows(sock: list, ros: list, utterances: list, bits: int) -> None:
    speakers = {events[0].utterance: events[0].speaker for events in utterances}
    for s, r, events in zip(sock, ros, utterances, strict=True):
        u = events[-1].utterance
        assert r is not None, f"no ROS 2 window for utterance {u}"
        assert (r.conversation, r.closed_utterance) == ("ros-1", u)
        assert (s["conversation"], s["closed_utterance"]) == ("sock-1", u)
        assert r.completion == s["completion"]
        assert math.isclose(r.abstain_below, s["abstain_below"], abs_tol=TOL)
        assert [e.utterance for e in r.utterances] == [x["utterance"] for x in s["utterances"]]
        for e, x in zip(r.utterances, s["utterances"], strict=True):
            where = f"utterance {e.utterance} of the window closed by {u}"
            assert (e.observed, e.label, e.label_name) == (x["avail"], x["label"], x["label_name"]), where
            assert len(e.probs) == len(x["probs"]), where
            assert all(math.isclose(a, b, abs_tol=TOL) for a, b in zip(e.probs, x["probs"])), (where, e.probs, x["probs"])
            assert math.isclose(e.confidence, x["confidence"], abs_tol=TOL), where
            assert e.uncertain == x["uncertain"], where
            assert e.has_regression == (x["reg"] is not None), where
            if x["reg"] is not None:
                assert math.isclose(e.regression, x["reg"], abs_tol=TOL), where
            assert e.speaker == speakers[e.utterance], where
            assert e.completed == bits & ~e.observed, where
    # The utterance with a dropout was completed.
    dropped = {e.utterance: msgs.MODALITY_BITS[e.modality] for ev in utterances for e in ev if e.kind == msgs.DROPOUT}
    last = ros[-1].utterances
    for e in last:
        if e.utterance in dropped:
            assert e.completed & dropped[e.utterance] and not e.observed & dropped[e.utterance], e
    assert dropped and any(e.utterance in dropped for e in last)


def run_both(tmp_path: Path, model: Path, transcripts: bool) -> None:
    domain = domain_id()
    utterances = synthetic_conversation(model_sizes(model), utterances=4, seed=22, transcripts=transcripts)
    daemon = Daemon(tmp_path, model, domain)
    try:
        client = SocketClient(daemon.sock)
        sock = socket_windows(client, "sock-1", utterances)
        with session(domain, daemon) as s:
            ros = s.run_conversation("ros-1", utterances, WAIT)
            assert all(w is not None for w in ros), (ros, daemon.tail())
            assert_same_windows(sock, ros, utterances, model_bits(model))
            assert s.notices == [], s.notices
        client.close()
        assert daemon.alive(), daemon.tail()
    finally:
        daemon.stop()


def test_features_over_ros2_equal_the_socket_path(tmp_path):
    run_both(tmp_path, MOSI, transcripts=False)


def test_transcripts_over_ros2_equal_the_socket_path(tmp_path):
    missing = frontend_missing(IEMOCAP6)
    if missing:
        pytest.skip(missing)
    run_both(tmp_path, IEMOCAP6, transcripts=True)


def raw_input(conversation: str, utterance: int, kind: int, modality: int = 0, values=()) -> msgs.SensorInput:
    return msgs.SensorInput(kind=kind, conversation=conversation, utterance=utterance, speaker=1, modality=modality,
                            values=list(values))


def wait_notices(s: Session, want: dict, daemon: Daemon) -> None:
    """Until the notices announce at least `want` ({reason name: count})."""
    ok = s.wait_for(lambda: all(s.notice_counts().get(k, 0) >= v for k, v in want.items()), WAIT)
    assert ok, (s.notice_counts(), want, daemon.tail())


def test_bad_input_over_ros2_is_refused_announced_and_counted(tmp_path):
    domain = domain_id()
    sizes = model_sizes(MOSI)
    # A per-sender rate the flood below exceeds on any machine: 20 frames/s, burst 40.
    daemon = Daemon(tmp_path, MOSI, domain, rate=(20, 40))
    try:
        with session(domain, daemon) as s:
            good = synthetic_conversation(sizes, utterances=3, seed=5, dropout_at=-1)
            # A good utterance first: the node works.
            assert s.run_conversation("bad-1", good[:1], WAIT)[0] is not None, daemon.tail()
            u = 1
            s.send(good[u][:1], "bad-1")  # UtteranceStart
            s.input.write(raw_input("bad-1", u, msgs.FEATURES, msgs.MODALITY_AUDIO, [0.5] * (sizes["audio"] - 1)))
            nan = [0.25] * sizes["text"]
            nan[3] = math.nan
            s.input.write(raw_input("bad-1", u, msgs.FEATURES, msgs.MODALITY_TEXT, nan))
            wait_notices(s, {"WrongLength": 1, "NonFinite": 1}, daemon)
            s.input.write(raw_input("bad-1", u, msgs.FEATURES, 7, [0.5] * sizes["visual"]))  # no such modality id
            wait_notices(s, {"Malformed": 1}, daemon)
            s.input.write(raw_input("x" * (g.MAX_CONVERSATION_ID + 1), u, msgs.UTTERANCE_START))
            wait_notices(s, {"Malformed": 2}, daemon)
            by_reason = {}
            for n in s.notices:
                by_reason.setdefault(n.reason_name, []).append(n)
            for name, reason in (("WrongLength", msgs.WRONG_LENGTH), ("NonFinite", msgs.NON_FINITE),
                                 ("Malformed", msgs.MALFORMED)):
                assert all(n.reason == reason for n in by_reason[name]), by_reason[name]
            first = by_reason["NonFinite"][0]
            assert (first.conversation, first.has_utterance, first.utterance) == ("bad-1", True, u), first
            long_id = by_reason["Malformed"][-1]
            assert (long_id.conversation, long_id.has_utterance) == ("", False), long_id
            # The utterance still completes with its good features: the bad ones poisoned nothing.
            s.send(good[u][1:], "bad-1")
            assert s.wait_for(lambda: s.window("bad-1", u) is not None, WAIT), (s.notice_counts(), daemon.tail())
            assert s.window("bad-1", u).utterances[-1].observed == model_bits(MOSI)

            # A flood: far more than the burst, as fast as the writer goes.
            for _ in range(300):
                s.input.write(raw_input("flood-1", 0, msgs.RESET))
            wait_notices(s, {"Flood": 1}, daemon)

            # The diagnostics count what the notices announced (they come every second).
            def settled():
                d = s.latest_diagnostics()
                counts = s.notice_counts()
                return d is not None and all(d.get(f"rejected.{k}") == str(v) for k, v in counts.items())
            settled_ok = s.wait_for(settled, WAIT)
            diag = s.latest_diagnostics()
            assert settled_ok, (s.notice_counts(), diag)
            counts = s.notice_counts()
            assert set(counts) == {"WrongLength", "NonFinite", "Malformed", "Flood"}, counts
            assert (counts["WrongLength"], counts["NonFinite"], counts["Malformed"]) == (1, 1, 2), counts
            assert 0 < counts["Flood"] < 300, counts
            assert int(diag["ros2.inputs_refused"]) == counts["Malformed"] + counts["Flood"], diag
            before_flood = len(good[0]) + 1 + 4 + (len(good[1]) - 1)  # utterance 0, start, 4 bad, the rest
            assert int(diag["ros2.inputs_received"]) >= before_flood + counts["Flood"], diag
            status = s.diagnostics[-1].status[0]
            assert status.level == msgs.DIAG_OK and status.hardware_id, status

            # Still up: the socket answers, and ROS 2 input is served again once the bucket refills.
            client = SocketClient(daemon.sock)
            assert client.status()["rejected"].get("Flood") == counts["Flood"]
            client.close()
            s.wait_for(lambda: False, 40 / 20 + 0.5)  # the burst refills at 20 frames/s
            assert s.run_conversation("bad-1", good[2:], WAIT)[0] is not None, (s.notice_counts(), daemon.tail())
        assert daemon.alive(), daemon.tail()
    finally:
        daemon.stop()


def test_modality_the_model_lacks_over_ros2(tmp_path):
    missing = frontend_missing(IEMOCAP6)
    if missing:
        pytest.skip(missing)
    assert "visual" not in model_sizes(IEMOCAP6)
    domain = domain_id()
    daemon = Daemon(tmp_path, IEMOCAP6, domain)
    try:
        with session(domain, daemon) as s:
            s.input.write(raw_input("ta-1", 0, msgs.UTTERANCE_START))
            s.input.write(raw_input("ta-1", 0, msgs.FEATURES, msgs.MODALITY_VISUAL, [0.5] * 100))
            wait_notices(s, {"NoSuchModality": 1}, daemon)
            (n,) = [n for n in s.notices if n.reason_name == "NoSuchModality"]
            assert (n.reason, n.conversation, n.utterance, n.count) == (msgs.NO_SUCH_MODALITY, "ta-1", 0, 1), n
        assert daemon.alive(), daemon.tail()
    finally:
        daemon.stop()


def test_sigterm_with_ros2_active_exits_zero(tmp_path):
    domain = domain_id()
    daemon = Daemon(tmp_path, MOSI, domain)
    try:
        with session(domain, daemon) as s:
            utterances = synthetic_conversation(model_sizes(MOSI), utterances=1, seed=1, dropout_at=-1)
            assert s.run_conversation("term-1", utterances, WAIT)[0] is not None, daemon.tail()
            daemon.proc.send_signal(signal.SIGTERM)
            try:
                rc = daemon.proc.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:
                pytest.fail(f"gsdnet serve did not stop within {WAIT} s of SIGTERM:\n{daemon.tail()}")
        assert rc == 0, daemon.tail()
    finally:
        daemon.stop()


def test_the_documented_listener_prints_each_emotion(tmp_path):
    """docs/ROS2.md's example subscriber (`python -m gsdnet_ros2.listen`) against the daemon."""
    domain = domain_id()
    daemon = Daemon(tmp_path, MOSI, domain)
    cmd = [sys.executable, "-m", "gsdnet_ros2.listen", "--domain", str(domain), "--count", "2",
           "--duration", str(WAIT)]
    listener = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert listener.stdout.readline().startswith("listening on /gsdnet/emotions"), daemon.tail()
        with session(domain, daemon) as s:
            utterances = synthetic_conversation(model_sizes(MOSI), utterances=2, seed=3, dropout_at=1)
            ros = s.run_conversation("listen-1", utterances, WAIT)
        out, _ = listener.communicate(timeout=WAIT)
        lines = [ln for ln in out.splitlines() if ln.startswith("listen-1")]
        assert len(lines) == 2, out
        for ln, w in zip(lines, ros, strict=True):
            last = w.utterances[-1]
            assert ln.startswith(f"listen-1 #{last.utterance} speaker {last.speaker}: {last.label_name} "), (ln, w)
        # Utterance 1 dropped its last modality (visual): the listener says it was completed.
        assert "completed none" in lines[0] and "completed visual" in lines[1], lines
    finally:
        if listener.poll() is None:
            listener.kill()
        daemon.stop()


def refused_sequence(sizes: dict) -> tuple[list, list, dict]:
    """An utterance with a duplicate, a wrong-length and a NaN feature among good ones, and a
    late feature after it closed: (events before the window, events after it, the refusals
    the socket path gives them)."""
    F, S = msgs.FEATURES, 1
    good = {m: tuple(0.25 for _ in range(n)) for m, n in sizes.items()}
    nan = list(good["visual"])
    nan[2] = math.nan
    before = [Event(msgs.UTTERANCE_START, 0, S), Event(F, 0, S, "text", good["text"]),
              Event(F, 0, S, "text", good["text"]),                       # Duplicate
              Event(F, 0, S, "audio", good["audio"][:-1]),                # WrongLength
              Event(F, 0, S, "visual", tuple(nan)),                       # NonFinite
              Event(F, 0, S, "audio", good["audio"]), Event(F, 0, S, "visual", good["visual"]),
              Event(msgs.UTTERANCE_END, 0, S)]
    after = [Event(F, 0, S, "text", good["text"])]                        # Late
    return before, after, {"Duplicate": 1, "WrongLength": 1, "NonFinite": 1, "Late": 1}


def test_refusals_over_ros2_are_the_socket_paths(tmp_path):
    """The same bad input, once over the Unix socket and once over ROS 2: the same refusals,
    with the same reasons and counts, and the same window for the good part."""
    domain = domain_id()
    before, after, want = refused_sequence(model_sizes(MOSI))
    daemon = Daemon(tmp_path, MOSI, domain)
    try:
        client = SocketClient(daemon.sock)
        client.send(g.subscribe_scored())
        client.send(g.subscribe_notices())
        client.status()
        for e in before:
            client.send(frame_of(e, "sock-2"))
        sock_window = client.next(lambda tag, m: tag == g.SCORED and m["conversation"] == "sock-2")
        for e in after:
            client.send(frame_of(e, "sock-2"))
        client.status()  # answered after the notices of everything sent before it
        sock_counts: dict = {}
        for m in client.notices:
            sock_counts[m["reason"]] = sock_counts.get(m["reason"], 0) + m["count"]
        assert sock_counts == want, sock_counts
        with session(domain, daemon) as s:
            s.send(before, "ros-2")
            assert s.wait_for(lambda: s.window("ros-2", 0) is not None, WAIT), daemon.tail()
            s.send(after, "ros-2")
            wait_notices(s, want, daemon)
            s.wait_for(lambda: False, 0.3)  # a notice arriving late would show up here
            assert s.notice_counts() == want, s.notice_counts()
            ros_window = s.window("ros-2", 0).utterances[-1]
        sock_last = sock_window["utterances"][-1]
        assert (ros_window.observed, ros_window.label) == (sock_last["avail"], sock_last["label"])
        assert all(math.isclose(a, b, abs_tol=TOL) for a, b in zip(ros_window.probs, sock_last["probs"], strict=True))
        client.close()
        assert daemon.alive(), daemon.tail()
    finally:
        daemon.stop()
