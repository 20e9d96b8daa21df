"""The soak's client threads: sensors, a restarting sensor, a flood, non-readers, subscribers, the RSS poller (gsdnet_soak.__main__)."""
from __future__ import annotations

import re
import socket
import threading
import time
from pathlib import Path

import gsdnet_client as gc
from gsdnet_soak.ledger import Utt

MODALITIES = gc.MODALITIES  # ("text", "audio", "visual"), avail bits 1, 2, 4
LOOPBACK = "127.0.0.1"


def connect(endpoint: tuple, timeout: float = 5.0) -> socket.socket:
    """endpoint: ("unix", path) or ("tcp", port on 127.0.0.1)."""
    kind, where = endpoint
    if kind == "unix":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(str(where))
    else:
        s = socket.create_connection((LOOPBACK, int(where)), timeout=timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def request_status(endpoint: tuple, timeout: float = 5.0):
    """One StatusRequest on a fresh connection; the decoded report or None."""
    try:
        with connect(endpoint, timeout) as s:
            s.settimeout(timeout)
            s.sendall(gc.frame(gc.status_request()))
            return gc.receive(s, gc.FrameDecoder(), gc.STATUS)
    except (OSError, ConnectionError):
        return None


def request_health(endpoint: tuple, timeout: float = 5.0):
    """The daemon's Health report where this client knows the message (newer protocol), else None."""
    if not (hasattr(gc, "health_request") and hasattr(gc, "HEALTH")):
        return None
    try:
        with connect(endpoint, timeout) as s:
            s.settimeout(timeout)
            s.sendall(gc.frame(gc.health_request()))
            return gc.receive(s, gc.FrameDecoder(), gc.HEALTH)
    except (OSError, ConnectionError, gc.ProtocolError):
        return None


class Worker(threading.Thread):
    """A client thread; `stop` ends it, `error` keeps what went wrong."""

    def __init__(self, name: str, stop: threading.Event):
        super().__init__(name=name, daemon=True)
        self.stop = stop
        self.error = None


class Sensor(Worker):
    """An honest sensor streaming one conversation until `until` (monotonic)."""

    def __init__(self, name, conv, endpoint, pool, ledger, stop, until, rng, args):
        super().__init__(name, stop)
        self.conv, self.endpoint, self.pool, self.ledger = conv, endpoint, pool, ledger
        self.until, self.rng, self.args = until, rng, args
        self.sent = 0
        self.frames = 0
        self.disconnects = 0
        self.epoch = 0
        self.sock = None

    def run(self):
        try:
            self.sock = connect(self.endpoint)
            self.epoch = self.ledger.begin_epoch(self.conv)
            self.stream(until=self.until)
        except Exception as e:  # noqa: BLE001 - reported, the soak goes on
            self.error = f"{type(e).__name__}: {e}"
        finally:
            if self.sock:
                self.sock.close()

    def stream(self, until: float, first_id: int = 0):
        utt = first_id
        next_t = time.monotonic()
        while not self.stop.is_set() and time.monotonic() < until:
            self.send_utterance(utt)
            utt += 1
            next_t += self.rng.uniform(1 / self.args.max_rate, 1 / self.args.min_rate)
            self.stop.wait(max(0.0, next_t - time.monotonic()))

    def plan(self, triple) -> dict:
        """Per modality of the model: "send", "dropout" or "silent" (a modality the model lacks:
        "absent", nothing is sent); at least one "send"."""
        p = self.args
        plan = {}
        for m, v in zip(MODALITIES, triple):
            r = self.rng.random()
            if m not in p.dims:
                plan[m] = "absent"
            elif v is None or r < p.dropout_p:
                plan[m] = "dropout"
            elif r < p.dropout_p + p.silent_p:
                plan[m] = "silent"
            else:
                plan[m] = "send"
        if "send" not in plan.values():
            plan[self.rng.choice([m for m, v in zip(MODALITIES, triple) if v is not None])] = "send"
        return plan

    def send_utterance(self, utt: int):
        triple = self.rng.choice(self.pool)
        plan = self.plan(triple)
        speaker = utt % 2
        ts = int(time.time() * 1e6)
        start = gc.frame(gc.utterance_start(self.conv, utt, speaker, ts))
        rest = [gc.frame(gc.utterance_end(self.conv, utt, speaker, ts))]
        for m, v in zip(MODALITIES, triple):
            if plan[m] == "send":
                rest.append(gc.frame(gc.features(self.conv, utt, speaker, m, ts, v)))
            elif plan[m] == "dropout":
                rest.append(gc.frame(gc.dropout(self.conv, utt, m, ts)))
        self.rng.shuffle(rest)
        avail = sum(1 << i for i, m in enumerate(MODALITIES) if plan[m] == "send")
        key = (self.conv, self.epoch, utt)
        self.ledger.register(*key, Utt(self.name, avail, "silent" in plan.values()))
        frames = [start] + rest
        for i, f in enumerate(frames):
            if i == len(frames) - 1:
                self.ledger.mark_last(key)
            self.send(f)
            if i < len(frames) - 1 and self.rng.random() < 0.5:
                time.sleep(self.rng.uniform(0, 0.01))
        self.sent += 1

    def send(self, data: bytes):
        try:
            self.sock.sendall(data)
        except OSError:
            # The daemon dropped an honest sensor: counted (a failed check); reconnect and go on.
            self.disconnects += 1
            self.sock.close()
            self.sock = connect(self.endpoint)
            self.sock.sendall(data)
        self.frames += 1


class RestartingSensor(Sensor):
    """Restarts every `every` seconds: closes, reconnects, utterance ids from 0, no Reset."""

    def __init__(self, *a, every: float, **kw):
        super().__init__(*a, **kw)
        self.every = every
        self.restarts = 0
        self.epoch_sent: dict = {}

    def run(self):
        try:
            while not self.stop.is_set() and time.monotonic() < self.until:
                self.sock = connect(self.endpoint)
                self.epoch = self.ledger.begin_epoch(self.conv)
                self.restarts = self.epoch
                before = self.sent
                self.stream(until=min(self.until, time.monotonic() + self.every))
                self.epoch_sent[self.epoch] = self.sent - before
                if time.monotonic() >= self.until or self.stop.is_set():
                    break
                # Let this epoch's results arrive so that later results are unambiguous.
                self.ledger.wait_covered(3.0, conv=self.conv, epoch=self.epoch)
                self.sock.close()
                self.sock = None
                time.sleep(0.3)
        except Exception as e:  # noqa: BLE001
            self.error = f"{type(e).__name__}: {e}"
        finally:
            if self.sock:
                self.sock.close()


class Flood(Worker):
    """Valid frames on its own conversation, as fast as the socket takes them (or --flood-fps)."""

    def __init__(self, endpoint, conv, dims, stop, fps, rng):
        super().__init__("flood", stop)
        self.endpoint, self.fps = endpoint, fps
        frames = []
        for utt in range(400):
            frames.append(gc.frame(gc.utterance_start(conv, utt, 0, utt)))
            for m in (m for m in MODALITIES if m in dims):
                frames.append(gc.frame(gc.features(conv, utt, 0, m, utt, [rng.uniform(-1, 1) for _ in range(dims[m])])))
            frames.append(gc.frame(gc.utterance_end(conv, utt, 0, utt)))
        self.frames_per_buf = len(frames)
        self.chunks = [b"".join(frames[i:i + 50]) for i in range(0, len(frames), 50)]
        self.frames_sent = 0
        self.bytes_sent = 0
        self.reconnects = 0

    def run(self):
        sock = None
        began = time.monotonic()
        try:
            while not self.stop.is_set():
                if sock is None:
                    sock = connect(self.endpoint)
                for chunk in self.chunks:
                    if self.stop.is_set():
                        break
                    try:
                        sock.sendall(chunk)
                    except OSError:
                        self.reconnects += 1
                        sock.close()
                        sock = None
                        break
                    self.frames_sent += 50
                    self.bytes_sent += len(chunk)
                    if self.fps:
                        ahead = self.frames_sent / self.fps - (time.monotonic() - began)
                        if ahead > 0:
                            self.stop.wait(ahead)
        except Exception as e:  # noqa: BLE001
            self.error = f"{type(e).__name__}: {e}"
        finally:
            if sock:
                sock.close()


class NonReader(Worker):
    """From `start_at` (monotonic), sends `total` StatusRequests at `rate`/s and never reads.
    Its socket stays open until `close()` (after the daemon exited), so unless the daemon drops
    it, it is connected when SIGTERM arrives."""

    def __init__(self, name, endpoint, total, rate, stop, start_at=0.0):
        super().__init__(name, stop)
        self.endpoint, self.total, self.rate, self.start_at = endpoint, total, rate, start_at
        self.sent = 0
        self.blocked = False
        self.disconnected = False
        self.sock = None

    def run(self):
        try:
            if self.stop.wait(max(0.0, self.start_at - time.monotonic())):
                return
            self.sock = connect(self.endpoint)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            self.sock.settimeout(2.0)
            request = gc.frame(gc.status_request())
            began = time.monotonic()
            while self.sent < self.total and not self.stop.is_set():
                try:
                    self.sock.sendall(request)
                except socket.timeout:
                    self.blocked = True  # the daemon stopped reading this connection
                    return
                except OSError:
                    self.disconnected = True  # the daemon closed it
                    return
                self.sent += 1
                ahead = self.sent / self.rate - (time.monotonic() - began)
                if ahead > 0:
                    self.stop.wait(ahead)
        except Exception as e:  # noqa: BLE001
            self.error = f"{type(e).__name__}: {e}"

    def close(self):
        if self.sock:
            self.sock.close()


class Subscriber(Worker):
    """Subscribes and reads. Persistent: until the daemon closes the stream or `stop`, feeding
    the ledger. Transient: sessions of 1-6 s with pauses, until `stop`."""

    def __init__(self, name, endpoint, stop, ledger=None, rng=None, persistent=False):
        super().__init__(name, stop)
        self.endpoint, self.ledger, self.rng, self.persistent = endpoint, ledger, rng, persistent
        self.ready = threading.Event()
        self.results = 0
        self.bad_frames = 0
        self.sessions = 0
        self.eof_at = None  # monotonic time the daemon closed a persistent subscription

    def run(self):
        try:
            if self.persistent:
                self.session(None)
            else:
                while not self.stop.is_set():
                    self.session(time.monotonic() + self.rng.uniform(1, 6))
                    self.stop.wait(self.rng.uniform(0.2, 1.5))
        except Exception as e:  # noqa: BLE001
            self.error = f"{type(e).__name__}: {e}"
            self.ready.set()

    def session(self, until):
        with connect(self.endpoint) as s:
            self.sessions += 1
            s.sendall(gc.frame(gc.subscribe()) + gc.frame(gc.status_request()))
            s.settimeout(0.25)
            dec = gc.FrameDecoder()
            while not self.stop.is_set() and (until is None or time.monotonic() < until):
                try:
                    data = s.recv(65536)
                except socket.timeout:
                    continue
                except OSError:
                    data = b""
                if not data:
                    if self.persistent:
                        self.eof_at = time.monotonic()
                    return
                t = time.monotonic()
                for item in dec.feed(data):
                    if isinstance(item, gc.ProtocolError):
                        self.bad_frames += 1
                    elif item[0] == gc.STATUS:
                        self.ready.set()  # Subscribe was handled before this answer
                    elif item[0] == gc.RESULT:
                        self.results += 1
                        if self.ledger is not None:
                            self.ledger.on_result(item[1], t)


class RssPoller(Worker):
    """Max VmRSS and VmHWM (KiB) of a process, polled from /proc."""

    def __init__(self, pid, stop):
        super().__init__("rss", stop)
        self.pid = pid
        self.max_rss = 0
        self.hwm = 0
        self.first_rss = None

    def poll(self):
        try:
            text = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return False
        vals = {k: int(v) for k, v in re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", text, re.M)}
        if "VmRSS" in vals:
            self.first_rss = self.first_rss or vals["VmRSS"]
            self.max_rss = max(self.max_rss, vals["VmRSS"])
        self.hwm = max(self.hwm, vals.get("VmHWM", 0))
        return True

    def run(self):
        while not self.stop.is_set() and self.poll():
            self.stop.wait(0.2)


# ---- the daemon -----------------------------------------------------------------------------
