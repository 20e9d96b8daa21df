"""What was sent and what was published, per conversation and restart epoch (gsdnet_soak)."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import gsdnet_client as gc

MODALITIES = gc.MODALITIES  # ("text", "audio", "visual"), avail bits 1, 2, 4
LOOPBACK = "127.0.0.1"


@dataclass
class Utt:
    sensor: str
    avail: int  # bits of the modalities sent as Features
    silent: bool  # a modality was never sent (closed by the daemon's deadline)
    t_last: float | None = None  # monotonic time of the utterance's last frame
    seen: float | None = None  # first result listing it (persistent subscriber)
    seen_avail: int | None = None


def increasing_tail(ids: list) -> int:
    """Index where the strictly increasing tail of `ids` starts."""
    i = len(ids) - 1
    while i > 0 and ids[i - 1] < ids[i]:
        i -= 1
    return max(i, 0)


def held_over(pairs: list, old: list) -> int:
    """Length of the longest prefix of `pairs` ((id, avail) of a window) that is a suffix of
    `old` (the conversation's window when the epoch began): entries from before a restart."""
    for k in range(min(len(pairs), len(old)), 0, -1):
        if pairs[:k] == old[len(old) - k:]:
            return k
    return 0


class Ledger:
    """Thread-safe record of every honest utterance and of every result seen."""

    def __init__(self):
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.utts: dict = {}  # (conversation, epoch, utterance id) -> Utt
        self.epochs: dict = {}  # conversation -> (epoch, monotonic start)
        self.results = 0
        self.results_by_conv: dict = {}
        self.inference_us: list = []  # latency_us of every result (the daemon's inference time)
        self.last_window: dict = {}  # conversation -> [(id, avail)] of its latest result
        self.old_window: dict = {}  # conversation -> last_window when its current epoch began

    def begin_epoch(self, conv: str) -> int:
        with self.lock:
            epoch = self.epochs[conv][0] + 1 if conv in self.epochs else 0
            self.epochs[conv] = (epoch, time.monotonic())
            self.old_window[conv] = self.last_window.get(conv, []) if epoch else []
            return epoch

    def register(self, conv: str, epoch: int, utt: int, u: Utt):
        with self.lock:
            self.utts[(conv, epoch, utt)] = u

    def mark_last(self, key):
        with self.lock:
            self.utts[key].t_last = time.monotonic()

    def on_result(self, res: dict, t: float):
        conv = res["conversation"]
        with self.cond:
            self.results += 1
            self.results_by_conv[conv] = self.results_by_conv.get(conv, 0) + 1
            self.inference_us.append(res["latency_us"])
            epoch = self.epochs.get(conv, (0, 0.0))[0]
            utts = res["utterances"]
            pairs = [(u["utterance"], u["avail"]) for u in utts]
            self.last_window[conv] = pairs
            utts = utts[held_over(pairs, self.old_window.get(conv, [])):]
            for u in utts[increasing_tail([u["utterance"] for u in utts]):]:
                rec = self.utts.get((conv, epoch, u["utterance"]))
                if rec is not None and rec.seen is None:
                    rec.seen, rec.seen_avail = t, u["avail"]
            self.cond.notify_all()

    def uncovered(self, conv=None, epoch=None) -> list:
        with self.lock:
            return [k for k, u in self.utts.items() if u.seen is None
                    and (conv is None or k[0] == conv) and (epoch is None or k[1] == epoch)]

    def wait_covered(self, timeout: float, conv=None, epoch=None) -> bool:
        end = time.monotonic() + timeout
        with self.cond:
            while True:
                missing = [k for k, u in self.utts.items() if u.seen is None
                           and (conv is None or k[0] == conv) and (epoch is None or k[1] == epoch)]
                left = end - time.monotonic()
                if not missing or left <= 0:
                    return not missing
                self.cond.wait(min(left, 0.25))


# ---- connections ----------------------------------------------------------------------------
