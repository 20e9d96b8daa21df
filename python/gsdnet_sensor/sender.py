"""The sensor's link to the daemon: one connection (Unix socket, TCP or serial line) speaking the
wire protocol through `gsdnet_client`, paced, with a reader thread that collects the results of
the sensor's conversation and the answers to its requests.

`send_utterance` is the one call per utterance: audio values (or None: the audio modality is
sent as missing) and the transcript. Protocol version 2 has no field for a transcript, so a
model's text modality is sent as missing (`Dropout`) and the daemon completes it; when the
protocol carries transcripts, this call is where the text goes. Refusals: version 2 tells a
sender only the daemon-wide counters of `Status.rejected` (and a `Reject` for another protocol
version), so the link reports the change of those counters over its run.
"""

import os
import queue
import socket
import termios
import threading
import time

import gsdnet_client as g

BAUDS = {9600: termios.B9600, 19200: termios.B19200, 38400: termios.B38400, 57600: termios.B57600,
         115200: termios.B115200, 230400: termios.B230400}


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

    def __init__(self, transport, conversation, rate=100.0, burst=20):
        self.t, self.conversation = transport, conversation
        self.pacer = Pacer(rate, burst)
        self.answers = queue.Queue()
        self.covered = set()  # utterance ids of this conversation seen in a result
        self.labels = {}  # utterance id -> label name of the latest result naming it
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
        if tag == g.RESULT and msg["conversation"] == self.conversation:
            for u in msg["utterances"]:
                self.covered.add(u["utterance"])
                self.labels[u["utterance"]] = u["label_name"]
        elif tag == g.REJECT:
            self.rejects.append(msg)
        elif tag in (g.STATUS, g.MODEL_INFO):
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

    def send_utterance(self, utterance, speaker, modalities, audio=None, transcript=None, timestamp_us=0):
        """Everything about one utterance: its audio values (None: missing), its transcript (not
        carried by protocol version 2: the text modality is reported missing) and its end.
        `modalities` are the model's (ModelInfo order); the sensor feeds audio only."""
        c = self.conversation
        for m in modalities:
            if m == "audio" and audio is not None:
                self.send(g.features(c, utterance, speaker, "audio", timestamp_us, [float(v) for v in audio]))
            else:
                self.send(g.dropout(c, utterance, m, timestamp_us))
        self.send(g.utterance_end(c, utterance, speaker, timestamp_us))

    def reset(self):
        self.send(g.reset(self.conversation))

    def wait_covered(self, ids, timeout):
        """Waits until every id in `ids` is in a result, or `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not set(ids) <= self.covered and time.monotonic() < deadline and not self.closed.is_set():
            time.sleep(0.02)
        return set(ids) <= self.covered

    def close(self):
        self.t.close()
        self._reader.join(timeout=2)
