"""Synthetic spoken dialogues for tests and examples: Debian's `espeak-ng` speaks each line with
its speaker's voice, `sox` resamples it and sets its level, and the lines are joined with pauses
into one WAV file plus a segments file (start_s, end_s, speaker, transcript).

A microphone noise floor (white noise, -70 dBFS RMS, seeded) is added under the whole recording:
espeak-ng's pauses are digital zeros, where openSMILE's formant descriptors drop to 0, which no
real microphone delivers (`gsdnet_sensor.audio`, "Gain matters").

    python -m gsdnet_sensor.synth OUT_DIR [--rate 16000]   # OUT_DIR/dialogue.wav, segments.csv
"""

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from gsdnet_sensor.segments import Segment, write_segments
from gsdnet_sensor.wav import read_wav, write_wav

VOICES = {"A": "en+m3", "B": "en+f3"}
DIALOGUE = (
    ("A", "Did you see the letter? We won the grant!"),
    ("B", "That is wonderful. I can hardly believe it."),
    ("A", "But the report is due tomorrow and nothing is ready."),
    ("B", "Oh no. Why did nobody tell me?"),
)
PEAK_DBFS = -6.0
NOISE_DBFS = -70.0
LEAD_S, GAP_S = 0.3, 0.6


class SynthUnavailable(RuntimeError):
    """espeak-ng or sox is not installed."""


def tools_missing():
    """The names of the missing tools among espeak-ng and sox."""
    return [t for t in ("espeak-ng", "sox") if shutil.which(t) is None]


def speak(text, voice, rate, workdir, peak_dbfs=PEAK_DBFS):
    """One line spoken by espeak-ng, at `rate` Hz mono int16 with its peak at `peak_dbfs`."""
    missing = tools_missing()
    if missing:
        raise SynthUnavailable(f"not installed: {', '.join(missing)} (apt-get install espeak-ng sox)")
    raw, out = Path(workdir) / "line.wav", Path(workdir) / "line_rate.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "-w", str(raw), text], check=True,
                   capture_output=True)
    # -R: repeatable (sox seeds its dither the same way every run), so a dialogue is the same bytes.
    subprocess.run(["sox", "-R", str(raw), "-r", str(rate), "-c", "1", "-b", "16", str(out),
                    "norm", str(peak_dbfs)], check=True, capture_output=True)
    x, got = read_wav(out)
    if got != rate:
        raise RuntimeError(f"sox wrote {got} Hz, asked for {rate} Hz")
    return x[:, 0].astype(np.int16)


def dialogue(lines=DIALOGUE, voices=None, rate=16000, seed=0):
    """(int16 mono samples, segments) of `lines` [(speaker, text)] spoken in turn with pauses."""
    voices = voices or VOICES
    rng = np.random.default_rng(seed)
    parts, segments, t = [np.zeros(int(LEAD_S * rate), np.int16)], [], LEAD_S
    speakers = {}
    with tempfile.TemporaryDirectory() as d:
        for name, text in lines:
            x = speak(text, voices[name], rate, d)
            idx = speakers.setdefault(name, len(speakers))
            segments.append(Segment(t, t + x.size / rate, idx, name, text))
            parts += [x, np.zeros(int(GAP_S * rate), np.int16)]
            t += x.size / rate + GAP_S
    pcm = np.concatenate(parts).astype(np.float64)
    pcm += rng.standard_normal(pcm.size) * 32768.0 * 10 ** (NOISE_DBFS / 20)
    return np.clip(np.round(pcm), -32768, 32767).astype(np.int16), segments


def write_dialogue(out_dir, rate=16000, lines=DIALOGUE, seed=0):
    """Writes OUT_DIR/dialogue.wav and OUT_DIR/segments.csv; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pcm, segments = dialogue(lines, rate=rate, seed=seed)
    wav, seg = out / "dialogue.wav", out / "segments.csv"
    write_wav(wav, pcm, rate)
    write_segments(seg, segments)
    return wav, seg


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out_dir")
    p.add_argument("--rate", type=int, default=16000, help="sample rate of the WAV (default 16000)")
    args = p.parse_args(argv)
    try:
        wav, seg = write_dialogue(args.out_dir, rate=args.rate)
    except SynthUnavailable as e:
        print(f"gsdnet_sensor.synth: {e}", file=sys.stderr)
        return 2
    print(f"wrote {wav} and {seg}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
