"""A foreign ROS 2 peer of the daemon: feeds it a synthetic conversation over DDS and collects
what it publishes (`python -m gsdnet_ros2.peer --domain N`).

Owns: the synthetic conversation (`synthetic_conversation`: seeded, finite features of the
model's sizes, or a transcript plus the other modalities for a model with a text frontend; one
utterance has a `Dropout`, so completion runs), its events as `SensorInput` samples
(`sensor_input`), and `Session`, a CycloneDDS participant (gsdnet_ros2.dds, loopback only) with
a writer on the daemon's input topic and readers on its emotions, notices and diagnostics, which
sends an utterance at a time and waits for the window it closes (lockstep, so no window is
superseded and every utterance's result is published). The command prints each window's last
utterance and the notices, and exits 1 when a window did not come (bounded waits).

    python -m gsdnet_ros2.peer --domain 7 [--namespace /] [--model models/gsdnet-mosi]
                               [--conversation ros-1] [--utterances 4] [--seed 0]
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

from gsdnet_ref.paths import ROOT
from gsdnet_ros2 import dds, msgs

# A few plain English sentences for the transcript case (synthetic, no corpus text).
SENTENCES = (
    "I cannot believe the flight was cancelled again.",
    "Well, that is the best news I have heard in weeks!",
    "We should talk about it later, I am tired.",
    "Why did you not call me back last night?",
    "Okay so the car broke down on the way home.",
    "Honestly it all worked out in the end.",
)


@dataclass(frozen=True)
class Event:
    """One input event of a conversation (the conversation id is given when it is sent)."""
    kind: int                      # msgs.FEATURES, UTTERANCE_START, ...
    utterance: int
    speaker: int = 0
    modality: str | None = None    # "text" | "audio" | "visual" (FEATURES, DROPOUT)
    values: tuple = ()             # FEATURES
    text: str = ""                 # TRANSCRIPT
    timestamp_us: int = 0


def model_sizes(model: Path) -> dict:
    """{modality: feature size} of the model (its manifest's [modalities])."""
    return dict(tomllib.loads((Path(model) / "manifest.toml").read_text())["modalities"])


def has_text_frontend(model: Path) -> bool:
    return "text" in tomllib.loads((Path(model) / "manifest.toml").read_text()).get("frontends", {})


def synthetic_conversation(sizes: dict, utterances: int = 4, seed: int = 0, transcripts: bool = False,
                           dropout_at: int = 1) -> list[list[Event]]:
    """Per utterance, its events: start, features of every modality (values ~ N(0, 1), finite,
    float32-exact) or, with `transcripts`, the text as a TRANSCRIPT, then the end. Utterance
    `dropout_at` sends a DROPOUT instead of its last modality's features (completion runs for
    it). Two speakers alternate."""
    rng = random.Random(seed)
    out = []
    mods = [m for m in ("text", "audio", "visual") if m in sizes]
    for u in range(utterances):
        speaker, t = 1 + u % 2, 1_000_000 * (u + 1)
        events = [Event(msgs.UTTERANCE_START, u, speaker, timestamp_us=t)]
        for i, m in enumerate(mods):
            if u == dropout_at and i == len(mods) - 1:
                events.append(Event(msgs.DROPOUT, u, speaker, modality=m, timestamp_us=t + 1))
            elif m == "text" and transcripts:
                events.append(Event(msgs.TRANSCRIPT, u, speaker, text=SENTENCES[u % len(SENTENCES)], timestamp_us=t + 1))
            else:
                values = tuple(msgs.f32(rng.gauss(0.0, 1.0)) for _ in range(sizes[m]))
                events.append(Event(msgs.FEATURES, u, speaker, modality=m, values=values, timestamp_us=t + 1))
        events.append(Event(msgs.UTTERANCE_END, u, speaker, timestamp_us=t + 2))
        out.append(events)
    return out


def stamp(timestamp_us: int) -> msgs.Time:
    return msgs.Time(sec=timestamp_us // 1_000_000, nanosec=(timestamp_us % 1_000_000) * 1000)


def sensor_input(e: Event, conversation: str, frame_id: str = "peer") -> msgs.SensorInput:
    """The `SensorInput` of event `e` in `conversation`."""
    return msgs.SensorInput(
        header=msgs.Header(stamp=stamp(e.timestamp_us), frame_id=frame_id),
        kind=e.kind,
        conversation=conversation,
        utterance=e.utterance,
        speaker=e.speaker,
        modality=msgs.MODALITY_NAMES[e.modality] if e.modality else 0,
        values=list(e.values),
        text=e.text,
    )


class Session:
    """A participant on `domain_id` wired to the daemon's topics: `input` (writer), `emotions`,
    `notices`, `diagnostics` (readers). What the readers took is kept in `windows`, `notices`
    and `diagnostics` (in arrival order)."""

    def __init__(self, domain_id: int, namespace: str = "/", diagnostics: bool = True):
        self.peer = dds.Ros2Peer(domain_id, namespace)
        self.input = self.peer.writer(dds.INPUT)
        self.emotions = self.peer.reader(dds.EMOTIONS)
        self.notice_reader = self.peer.reader(dds.NOTICES)
        self.diag_reader = self.peer.reader(dds.DIAGNOSTICS) if diagnostics else None
        self.windows: list[msgs.EmotionWindow] = []
        self.notices: list[msgs.Notice] = []
        self.diagnostics: list[msgs.DiagnosticArray] = []

    def endpoints(self) -> list:
        return [e for e in (self.input, self.emotions, self.notice_reader, self.diag_reader) if e is not None]

    def wait_matched(self, timeout: float, every_topic: bool = True) -> bool:
        """Whether the endpoints found their counterparts in the daemon within `timeout` s: all
        of them, or (not `every_topic`) the input writer and the emotions reader."""
        return dds.wait_matched(self.endpoints() if every_topic else [self.input, self.emotions], timeout)

    def poll(self) -> None:
        self.windows += dds.take(self.emotions)
        self.notices += dds.take(self.notice_reader)
        if self.diag_reader is not None:
            self.diagnostics += dds.take(self.diag_reader)

    def wait_for(self, done, timeout: float, step: float = 0.02) -> bool:
        """Poll the readers until `done()` holds (True) or `timeout` s pass (False)."""
        until = time.monotonic() + timeout
        while True:
            self.poll()
            if done():
                return True
            if time.monotonic() >= until:
                return False
            time.sleep(step)

    def send(self, events, conversation: str) -> None:
        for e in events:
            self.input.write(sensor_input(e, conversation))

    def window(self, conversation: str, closed: int) -> msgs.EmotionWindow | None:
        """The latest window of `conversation` closed by utterance `closed`, if one came."""
        found = [w for w in self.windows if w.conversation == conversation and w.closed_utterance == closed]
        return found[-1] if found else None

    def run_conversation(self, conversation: str, utterances: list[list[Event]], timeout: float) -> list:
        """Send each utterance and wait for its window (lockstep); the windows, None where one
        did not come within `timeout` s (the rest is still sent)."""
        out = []
        for events in utterances:
            u = events[-1].utterance
            self.send(events, conversation)
            self.wait_for(lambda: self.window(conversation, u) is not None, timeout)
            out.append(self.window(conversation, u))
        return out

    def notice_counts(self) -> dict:
        """{reason name: refusals announced} over the notices taken so far."""
        counts: dict = {}
        for n in self.notices:
            counts[n.reason_name] = counts.get(n.reason_name, 0) + n.count
        return counts

    def latest_diagnostics(self) -> dict | None:
        """The key/values of the latest DiagnosticArray's first status (None before one came)."""
        if not self.diagnostics or not self.diagnostics[-1].status:
            return None
        return {kv.key: kv.value for kv in self.diagnostics[-1].status[0].values}

    def close(self) -> None:
        self.peer.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def describe(w: msgs.EmotionWindow) -> str:
    last = w.utterances[-1] if w.utterances else None
    if last is None:
        return f"{w.conversation} utt {w.closed_utterance}: no utterances"
    bits = lambda b: "+".join(m for m, bit in msgs.MODALITY_BITS.items() if b & bit) or "-"
    return (f"{w.conversation} utt {last.utterance} speaker {last.speaker}: {last.label_name} "
            f"({last.confidence:.3f}{' uncertain' if last.uncertain else ''}) observed {bits(last.observed)} "
            f"completed {bits(last.completed)} [{w.completion}, {w.latency_us} us]")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--domain", type=int, required=True, help="ROS_DOMAIN_ID of the daemon's [ros2] table")
    p.add_argument("--namespace", default="/")
    p.add_argument("--model", type=Path, default=ROOT / "models" / "gsdnet-mosi",
                   help="the model the daemon serves (its feature sizes)")
    p.add_argument("--conversation", default="ros-1")
    p.add_argument("--utterances", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=20.0, help="longest wait for discovery and for each window (s)")
    p.add_argument("--json", type=Path, help="write the windows and notices here")
    a = p.parse_args(argv)
    conversation = synthetic_conversation(model_sizes(a.model), a.utterances, a.seed,
                                          transcripts=has_text_frontend(a.model))
    with Session(a.domain, a.namespace, diagnostics=False) as s:
        if not s.wait_matched(a.timeout, every_topic=False):
            print(f"no daemon on domain {a.domain} (namespace {a.namespace}) within {a.timeout} s", file=sys.stderr)
            return 1
        windows = s.run_conversation(a.conversation, conversation, a.timeout)
        s.wait_for(lambda: False, 0.3)  # notices of the last inputs
        for w in windows:
            print(describe(w) if w else "window missing")
        for n in s.notices:
            print(f"notice {n.reason_name} x{n.count} conversation {n.conversation!r}: {n.detail}")
        if a.json:
            a.json.write_text(json.dumps({"windows": [msgs.to_dict(w) if w else None for w in windows],
                                          "notices": [msgs.to_dict(n) for n in s.notices]}, indent=1))
    return 0 if all(windows) else 1


if __name__ == "__main__":
    sys.exit(main())
