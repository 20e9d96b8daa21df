"""The sensor program's runs: utterances from a WAV file and a segments file, or from live capture
with an energy endpointer or boundaries given from outside (a speech recogniser's JSON lines),
each turned into the 47 audio values and sent to the daemon; and the report at exit.

Audio policy per utterance: digital zero or no sample above -60 dBFS (a dead, muted or failed
microphone), 100 ms or more of exact zeros inside it (the microphone stopped delivering), audio
the microphone did not deliver, or audio the frontend refuses (too short) ->
the audio modality is sent as missing (`Dropout`), so the daemon completes it. Clipping and
too-quiet audio are sent, warned about and counted: the features are off but not absent.
"""

import json
import logging
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from gsdnet_sensor.audio import N_VALUES, AudioError
from gsdnet_sensor.capture import RATE
from gsdnet_sensor.endpoint import Endpointer
from gsdnet_sensor.segments import parse_rows

log = logging.getLogger("gsdnet_sensor")


@dataclass
class Report:
    utterances: int = 0
    audio_sent: int = 0
    audio_missing: dict = field(default_factory=dict)  # reason -> count
    flagged: dict = field(default_factory=dict)  # flag -> count
    expected: int = 0  # utterances sent with at least one modality (a result is due)
    empty: int = 0  # utterances sent with no modality at all (the daemon skips them)
    covered: int = 0
    refused: dict = field(default_factory=dict)  # reason -> refusals of this sender's input (notices)
    notices: list = field(default_factory=list)  # the first notices, verbatim
    rejects: list = field(default_factory=list)
    microphone: str | None = None
    offline: bool = False  # no daemon: nothing was sent

    def lines(self):
        if self.offline:
            out = [f"utterances: {self.utterances} (audio values: {self.audio_sent}, audio missing: "
                    f"{sum(self.audio_missing.values())}, flagged: {sum(self.flagged.values())}); offline, nothing sent"]
            return out + ([f"microphone: {self.microphone}"] if self.microphone else [])
        out = [f"utterances sent: {self.utterances} (audio values: {self.audio_sent}, "
               f"audio missing: {sum(self.audio_missing.values())})"]
        out += [f"  audio missing, {k}: {n}" for k, n in sorted(self.audio_missing.items())]
        out += [f"  audio flagged {k}: {n}" for k, n in sorted(self.flagged.items())]
        if self.empty:
            out.append(f"  without any modality (no result expected): {self.empty}")
        out.append(f"results received: {self.covered} of {self.expected} utterances covered")
        refused = ", ".join(f"{k} {n}" for k, n in sorted(self.refused.items())) or "none"
        out.append(f"refused by the daemon: {refused}")
        for n in self.notices:
            at = "" if n["utterance"] is None else f" utterance {n['utterance']}"
            out.append(f"  notice: {n['reason']} x{n['count']} ({n['conversation']}{at}): {n['detail']}")
        out += [f"daemon cannot read this sender: {r['reason']}: {r['detail']}" for r in self.rejects]
        if self.microphone:
            out.append(f"microphone: {self.microphone}")
        return out

    def exit_code(self):
        if self.offline:
            return 0
        return 1 if self.refused or self.rejects or self.covered < self.expected else 0


class Session:
    """Turns utterances into frames for one conversation; `link` None = offline (print only)."""

    def __init__(self, extractor, link=None, modalities=("audio",), features_out=None):
        self.extractor, self.link, self.modalities = extractor, link, tuple(modalities)
        self.features_out = features_out
        self.report = Report()
        self.next_id = 0

    def audio_values(self, samples, rate):
        """(values or None, reason for None) of one utterance's samples."""
        if samples is None or len(samples) == 0:
            return None, "not captured"
        try:
            f = self.extractor.extract(samples, rate)
        except AudioError as e:
            return None, f"refused by the frontend ({e})"
        if f.flags.silent:
            return None, "silent microphone"
        if f.flags.dropout:
            return None, f"microphone dropout ({f.flags.zero_run_s:.2f} s of digital zeros)"
        for name in f.flags.problems():  # clipping, too_quiet: sent, but counted
            self.report.flagged[name] = self.report.flagged.get(name, 0) + 1
            log.warning("utterance %d: audio %s (peak %.1f dBFS, active %.1f dBFS, clipped %.2f %%)",
                        self.next_id, name, f.flags.peak_dbfs, f.flags.active_dbfs, 100 * f.flags.clipped_fraction)
        return f.values, None

    def utterance(self, speaker, samples, rate, transcript=None, end_s=0.0):
        uid = self.next_id
        self.next_id += 1
        values, reason = self.audio_values(samples, rate)
        r = self.report
        r.utterances += 1
        if values is None:
            r.audio_missing[reason.split(" (")[0]] = r.audio_missing.get(reason.split(" (")[0], 0) + 1
            log.warning("utterance %d: audio missing: %s", uid, reason)
        else:
            r.audio_sent += 1
        if self.features_out is not None:
            row = values if values is not None else np.full(N_VALUES, np.nan, np.float32)
            self.features_out.write(row.astype("<f4").tobytes())
        if self.link is not None:
            self.link.send_utterance(uid, speaker, self.modalities, audio=values, transcript=transcript,
                                     timestamp_us=int(end_s * 1e6))
        else:
            state = "missing: " + reason if values is None else " ".join(f"{v:.4g}" for v in values[:4]) + " ..."
            print(f"utterance {uid} speaker {speaker} {end_s:.2f} s: {state}"
                  + (f" | {transcript}" if transcript else ""))
        return uid


def run_wav(session, samples, rate, segments, realtime=False):
    """Sends every segment of a recording (`samples` [n, channels]); `realtime` waits for each
    segment's end as a live sensor would."""
    t0 = time.monotonic()
    for s in segments:
        if realtime:
            time.sleep(max(0.0, s.end_s - (time.monotonic() - t0)))
        a, b = int(s.start_s * rate), min(int(s.end_s * rate), samples.shape[0])
        session.utterance(s.speaker, samples[a:b] if b > a else None, rate, s.transcript, s.end_s)


def drop_spans(samples, rate, spans):
    """A copy of `samples` with the microphone dead (zeros) over each (start_s, end_s) span."""
    out = samples.copy()
    for start, end in spans:
        out[int(start * rate):int(end * rate)] = 0
    return out


def run_endpointer(session, capture, speaker=0, duration_s=None):
    """Live capture cut by the energy endpointer, until the microphone fails or `duration_s`."""
    ep, pos = Endpointer(), 0
    limit = None if duration_s is None else int(duration_s * RATE)
    while True:
        capture.wait_until(pos / RATE + 0.1, timeout=0.5)
        failed = capture.failed  # read before the samples: everything before a failure is read
        end = capture.n if limit is None else min(capture.n, limit)
        new = capture.span(pos, end)
        pos += new.size
        cuts = ep.feed(new.astype(np.float32) / 32768)
        stop = failed is not None or (limit is not None and pos >= limit)
        if stop:
            cuts += ep.flush()
        for a, b in cuts:
            session.utterance(speaker, capture.span(a, b), RATE, None, b / RATE)
        if stop:
            session.report.microphone = failed
            return


def run_boundaries(session, capture, lines, slack_s=2.0):
    """Live capture cut by boundaries from outside: one JSON object per line (start_s, end_s,
    speaker, transcript; seconds since the capture started)."""
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            (seg,) = parse_rows([json.loads(line)], f"boundaries line {n}")
        except (ValueError, TypeError) as e:
            print(f"gsdnet-sensor: skipped boundaries line {n}: {e}", file=sys.stderr)
            continue
        left = seg.end_s - (time.monotonic() - capture.started) + slack_s
        covered = capture.wait_until(seg.end_s, timeout=max(left, 0.0))
        samples = capture.samples(seg.start_s, seg.end_s) if covered else None
        session.utterance(seg.speaker, samples, RATE, seg.transcript, seg.end_s)
    session.report.microphone = capture.failed


def finish(session, wait_s=5.0, end=True):
    """Ends the conversation (its place at the daemon is free at once), waits for the last
    results (at most `wait_s` without a new one), then for every notice of the run; returns the
    report of what was sent, covered and refused."""
    r, link = session.report, session.link
    if link is None:
        r.offline = True
        return r
    if end:
        link.end_conversation()
    link.wait_covered(wait_s)
    link.settle()
    with link.lock:
        led = link.ledger
        r.expected, r.empty, r.covered = led.n_expected(), led.empty, led.n_covered()
        r.refused, r.notices = dict(led.refused), list(led.notices)
    r.rejects = list(link.rejects)
    return r
