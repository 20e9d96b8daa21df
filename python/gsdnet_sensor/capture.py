"""Live capture: a command that writes 16 kHz mono signed 16-bit little-endian PCM to its standard
output (by default ALSA's `arecord`), read by a thread into a growing buffer.

The microphone has failed when the command cannot start, exits, or its output ends; `failed`
then says why and `end_s` stops growing. Utterances whose span reaches past the audio that was
captured, or whose audio is digital zero (a muted or dead microphone), have no audio: the sensor
sends the audio modality as missing and the daemon completes it.
"""

import subprocess
import threading
import time

import numpy as np

RATE = 16000
BLOCK = 3200  # bytes: 100 ms


def arecord_command(device="default"):
    return ["arecord", "-q", "-D", device, "-f", "S16_LE", "-r", str(RATE), "-c", "1", "-t", "raw"]


class Capture:
    """Runs `command` and keeps the last `keep_s` seconds it captured (int16)."""

    def __init__(self, command, keep_s=120.0):
        self.command = list(command)
        self.keep = int(keep_s * RATE)
        self.lock = threading.Condition()
        self.chunks, self.n = [], 0  # [(first sample position, int16 array)], samples captured
        self.failed = None
        self.started = time.monotonic()
        try:
            self.proc = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except OSError as e:
            self.proc = None
            self.failed = f"microphone command {self.command[0]!r} cannot start: {e}"
            return
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        rest = b""
        while True:
            block = self.proc.stdout.read1(BLOCK) if hasattr(self.proc.stdout, "read1") else self.proc.stdout.read(BLOCK)
            if not block:
                break
            block = rest + block
            usable = len(block) // 2 * 2
            rest = block[usable:]
            with self.lock:
                self.chunks.append((self.n, np.frombuffer(block[:usable], dtype="<i2")))
                self.n += usable // 2
                while self.chunks and self.chunks[0][0] + self.chunks[0][1].size < self.n - self.keep:
                    self.chunks.pop(0)
                self.lock.notify_all()
        code = self.proc.wait()
        err = self.proc.stderr.read().decode("utf-8", "replace").strip().splitlines()
        with self.lock:
            self.failed = f"microphone stream ended (exit {code}{': ' + err[-1] if err else ''})"
            self.lock.notify_all()

    @property
    def end_s(self):
        return self.n / RATE

    def samples(self, start_s, end_s):
        """int16 samples of [start_s, end_s) that were captured and are still kept."""
        return self.span(int(start_s * RATE), int(end_s * RATE))

    def span(self, a, b):
        """int16 samples of positions [a, b) that were captured and are still kept."""
        with self.lock:
            parts = [(p, c) for p, c in self.chunks if p < b and p + c.size > a]
        if not parts:
            return np.zeros(0, np.int16)
        first = parts[0][0]
        data = np.concatenate([c for _, c in parts])
        return data[max(a - first, 0):b - first]

    def wait_until(self, t_s, timeout):
        """Waits until `t_s` seconds were captured or the microphone failed; True when covered."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while self.end_s < t_s and self.failed is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.lock.wait(left)
            return self.end_s >= t_s

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self.proc.kill()
