"""The sensor's link to the daemon: one connection (Unix socket, TCP or serial line) speaking the
wire protocol through `gsdnet_client`, paced, with a reader thread that collects the results of
the sensor's conversation and the answers to its requests.

`send_utterance` is the one call per utterance: audio values (or None: the audio modality is
sent as missing) and the transcript, sent as a `Transcript` message (tag 16): the daemon's text
frontend turns it into the model's text vector. Without a transcript the text modality is sent
as missing (`Dropout`) and the daemon completes it. A model whose text is not a frontend
refuses transcripts (`TranscriptRefused`): open the link with `transcripts=False` for such a
model, and the text is sent as missing instead.

Pacing and refusals (docs/PROTOCOL.md, "Notices and limits"): `start` asks the daemon's limits
(`LimitsRequest`) and paces to them, and subscribes to notices of this sender's own refused input
and to results; `send_utterance` holds an utterance back while `queue_capacity` utterances wait
for a result (backpressure); `end_conversation` frees the conversation's place at the daemon;
`settle` returns once every notice of what was sent is in. `ledger` (gsdnet_client.ledger) holds
the account: sent, covered by a result, refused by reason.
"""

import os
import queue
import socket
import termios
import threading
import time

import gsdnet_client as g
from gsdnet_client.ledger import Ledger

BAUDS = {9600: termios.B9600, 19200: termios.B19200, 38400: termios.B38400, 57600: termios.B57600,
         115200: termios.B115200, 230400: termios.B230400}


# Share of the daemon's frame rates the link uses (the rest absorbs clock differences).
RATE_SHARE = 0.9


class LinkError(RuntimeError):
    """The daemon cannot be reached, answers wrongly, or serves a model the sensor cannot feed."""


class Transport:
    """A byte stream: a connected socket or an open serial device."""

    def __init__(self, sock=None, fd=None, name=""):
        self.sock, self.fd, self.name = sock, fd, name

    def send(self, data):
        if self.sock is not None:
            self.sock.sendall(data)
            return
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]

    def recv(self):
        """Bytes received (blocking); b"" once the stream ended."""
        if self.sock is not None:
            return self.sock.recv(65536)
        return os.read(self.fd, 4096)

    def close(self):
        if self.sock is not None:
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.sock.close()
        elif self.fd is not None:
            os.close(self.fd)


def open_transport(unix=None, tcp=None, serial=None, baud=115200):
    """Connects to the daemon by exactly one of a Unix socket path, HOST:PORT or a serial device."""
    try:
        if unix:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(unix)
            return Transport(sock=s, name=unix)
        if tcp:
            host, port = tcp.rsplit(":", 1)
            return Transport(sock=socket.create_connection((host, int(port)), timeout=10), name=tcp)
        if serial:
            if baud not in BAUDS:
                raise LinkError(f"baud {baud} not in {sorted(BAUDS)}")
            fd = os.open(serial, os.O_RDWR | os.O_NOCTTY)
            attrs = termios.tcgetattr(fd)
            attrs[0] = attrs[1] = attrs[3] = 0  # raw: no input, output or local processing
            attrs[2] = termios.CS8 | termios.CREAD | termios.CLOCAL
            attrs[4] = attrs[5] = BAUDS[baud]
            attrs[6][termios.VMIN], attrs[6][termios.VTIME] = 1, 0
            termios.tcsetattr(fd, termios.TCSANOW, attrs)
            return Transport(fd=fd, name=serial)
    except (OSError, ValueError) as e:
        raise LinkError(f"cannot reach the daemon at {unix or tcp or serial}: {e}") from e
    raise LinkError("name one of --unix, --tcp or --serial")


class Pacer:
    """A token bucket: at most `rate` frames a second after a burst of `burst`."""

    def __init__(self, rate, burst):
        self.rate, self.burst = float(rate), float(burst)
        self.tokens, self.last = float(burst), time.monotonic()

    def wait(self):
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens < 1:
            time.sleep((1 - self.tokens) / self.rate)
            self.tokens, self.last = 1.0, time.monotonic()
        self.tokens -= 1


class DaemonLink:
    """One connection to the daemon for one conversation."""

    def __init__(self, transport, conversation, rate=None, burst=20, transcripts=True, stall_s=10.0):
        self.t, self.conversation = transport, conversation
        self.transcripts = transcripts  # send transcripts (the model's text is a frontend)
        self.max_rate, self.max_burst = rate, burst  # caps of our own (None: the daemon's limit)
        self.pacer = Pacer(rate or 100.0, burst)  # until `start` knows the daemon's limits
        self.in_flight_cap = None  # utterances without a result before the next is held back
        self.stall_s = stall_s  # longest wait without a result before giving up on one
        self.answers = queue.Queue()
        self.ledger = Ledger()  # sent / covered / refused, shared with the reader thread
        self.lock = threading.Lock()
        self.rejects = []  # Reject notices
        self.bad_frames = 0
        self.closed = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        dec = g.FrameDecoder()
        try:
            while data := self.t.recv():
                for item in dec.feed(data):
                    self._dispatch(item)
        except OSError:
            pass
        self.closed.set()

    def _dispatch(self, item):
        if isinstance(item, g.ProtocolError):
            self.bad_frames += 1
            return
        tag, msg = item
        with self.lock:
            if self.ledger.on_message(tag, msg):
                return
        if tag == g.REJECT:
            self.rejects.append(msg)
        elif tag in (g.STATUS, g.MODEL_INFO, g.LIMITS):
            self.answers.put((tag, msg))

    def send(self, body):
        self.pacer.wait()
        try:
            self.t.send(g.frame(body))
        except OSError as e:
            raise LinkError(f"sending to {self.t.name}: {e}") from e

    def request(self, body, want, timeout=5.0):
        """Sends a request and returns the answer with tag `want`."""
        self.send(body)
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                tag, msg = self.answers.get(timeout=left)
            except queue.Empty:
                break
            if tag == want:
                return msg
        detail = f": {self.rejects[-1]['reason']} {self.rejects[-1]['detail']}" if self.rejects else ""
        raise LinkError(f"no answer from {self.t.name} within {timeout} s{detail}")

    def model_info(self):
        return self.request(g.model_info_request(), g.MODEL_INFO)

    def status(self):
        return self.request(g.status_request(), g.STATUS)

    def subscribe(self):
        self.send(g.subscribe())

    def limits(self):
        """The daemon's limits; for a link subscribed to notices, every notice of what was sent
        before arrives ahead of this answer."""
        return self.request(g.limits_request(), g.LIMITS)

    def start(self):
        """Paces to the daemon's limits (RATE_SHARE of its frame rates and half its bursts, within
        our own caps), holds utterances back beyond its queue, and subscribes to notices of this
        sender's refused input and to results."""
        lim = self.limits()
        rate = RATE_SHARE * min(lim["max_frames_per_second"], lim["total_frames_per_second"])
        if self.max_rate:
            rate = min(rate, self.max_rate)
        burst = max(1, min(self.max_burst, min(lim["burst"], lim["total_burst"]) // 2))
        self.pacer = Pacer(max(rate, 1.0), burst)
        self.in_flight_cap = max(1, lim["queue_capacity"])
        self.send(g.subscribe_notices())
        self.send(g.subscribe())
        return lim

    def _hold_back(self):
        """Backpressure: waits while `in_flight_cap` utterances wait for a result (at most
        `stall_s` without one; then they are written off and reported uncovered)."""
        if self.in_flight_cap is None:
            return
        deadline = time.monotonic() + self.stall_s
        while not self.closed.is_set():
            with self.lock:
                if self.ledger.in_flight() < self.in_flight_cap:
                    return
                if time.monotonic() >= deadline:
                    self.ledger.write_off()
                    return
            time.sleep(0.005)

    def send_utterance(self, utterance, speaker, modalities, audio=None, transcript=None, timestamp_us=0):
        """Everything about one utterance: its audio values (None: missing), its transcript (the
        text modality: a `Transcript`, cut to MAX_TRANSCRIPT bytes; None: missing) and its end.
        `modalities` are the model's (ModelInfo order)."""
        c = self.conversation
        self._hold_back()
        has_audio = "audio" in modalities and audio is not None
        has_text = "text" in modalities and transcript is not None and self.transcripts
        # recorded before the first frame: the daemon closes an utterance once no modality is
        # awaited, so its result may come back before the end is sent (a result for an
        # utterance not yet recorded would not cover it)
        with self.lock:
            self.ledger.sent(c, utterance, has_audio or has_text)
        for m in modalities:
            if m == "audio" and has_audio:
                self.send(g.features(c, utterance, speaker, "audio", timestamp_us, [float(v) for v in audio]))
            elif m == "text" and has_text:
                text = transcript.encode("utf-8")[: g.MAX_TRANSCRIPT].decode("utf-8", errors="ignore")
                self.send(g.transcript(c, utterance, speaker, timestamp_us, text))
            else:
                self.send(g.dropout(c, utterance, m, timestamp_us))
        self.send(g.utterance_end(c, utterance, speaker, timestamp_us))

    def reset(self):
        self.send(g.reset(self.conversation))

    def end_conversation(self):
        """`ConversationEnd`: open utterances end now and the conversation's place is free."""
        self.send(g.conversation_end(self.conversation))

    def wait_covered(self, timeout):
        """Waits until every utterance sent with data is in a result, or `timeout` seconds
        without a new one; True when all are."""
        deadline, seen = time.monotonic() + timeout, -1
        while not self.closed.is_set():
            with self.lock:
                covered, left = self.ledger.n_covered(), self.ledger.uncovered(self.conversation)
            if not left:
                return True
            if covered != seen:
                deadline, seen = time.monotonic() + timeout, covered
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return False

    def settle(self):
        """Returns once every notice of what was sent is in (the answer to a closing request
        comes after them)."""
        self.limits()

    def close(self):
        self.t.close()
        self._reader.join(timeout=2)
