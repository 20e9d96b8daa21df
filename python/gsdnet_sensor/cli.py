"""Command line of the sensor program (`gsdnet-sensor`, `python -m gsdnet_sensor`): argument
mapping only; the runs are in `gsdnet_sensor.program`.

    gsdnet-sensor wav DIALOGUE.wav --segments SEGMENTS.csv (--unix PATH | --tcp HOST:PORT | --serial DEV)
                  [--conversation ID] [--drop-audio START-END ...] [--realtime]
    gsdnet-sensor live (--unix ... | --tcp ... | --serial ...) --conversation ID
                  [--device hw:1,0 | --capture-cmd 'CMD ...'] [--boundaries FILE|-] [--speaker N] [--duration S]
    gsdnet-sensor wav ... --offline [--features-out FILE.f32]   (no daemon: print / write the 47 values)

Exit status: 0 = every utterance sent with a modality was covered by a result and the daemon
refused none of its input (its notices); 1 = something was refused or not covered; 2 = bad input or no
daemon; 3 = the microphone failed in endpointer mode.
"""

import argparse
import contextlib
import logging
import shlex
import sys
from pathlib import Path

import gsdnet_client as g

from gsdnet_sensor import program
from gsdnet_sensor.audio import N_VALUES, Extractor
from gsdnet_sensor.capture import Capture, arecord_command
from gsdnet_sensor.segments import SegmentsError, load_segments
from gsdnet_sensor.sender import DaemonLink, LinkError, open_transport
from gsdnet_sensor.wav import WavError, read_wav


def span(text):
    try:
        a, b = (float(x) for x in text.split("-", 1))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{text!r}: expected START-END in seconds") from e
    if not 0 <= a < b:
        raise argparse.ArgumentTypeError(f"{text!r}: needs 0 <= START < END")
    return a, b


def parser():
    p = argparse.ArgumentParser(prog="gsdnet-sensor", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="mode", required=True)
    wav = sub.add_parser("wav", help="a recording and its utterance boundaries")
    wav.add_argument("wav")
    wav.add_argument("--segments", required=True, help="CSV or JSON: start_s, end_s, speaker[, transcript]")
    wav.add_argument("--drop-audio", type=span, action="append", default=[], metavar="START-END",
                     help="the microphone is dead over this span (seconds): its utterances send audio as missing")
    wav.add_argument("--realtime", action="store_true", help="send each utterance at its end time")
    live = sub.add_parser("live", help="live capture")
    live.add_argument("--device", default="default", help="ALSA device for arecord (default: default)")
    live.add_argument("--capture-cmd", help="command writing 16 kHz mono S16_LE PCM to stdout (instead of arecord)")
    live.add_argument("--boundaries", help="JSON lines of start_s, end_s, speaker, transcript (seconds since "
                                           "the capture started) from a recogniser; '-' = stdin; absent = endpointer")
    live.add_argument("--speaker", type=int, default=0, help="speaker index in endpointer mode")
    live.add_argument("--duration", type=float, help="stop after this many seconds of capture (endpointer mode)")
    for sp in (wav, live):
        to = sp.add_mutually_exclusive_group()
        to.add_argument("--unix", help="the daemon's Unix socket")
        to.add_argument("--tcp", help="the daemon's HOST:PORT")
        to.add_argument("--serial", help="a serial device the daemon reads")
        to.add_argument("--offline", action="store_true", help="no daemon: print the values per utterance")
        sp.add_argument("--baud", type=int, default=115200)
        sp.add_argument("--conversation", help="conversation id (<= 32 bytes; default: the WAV's name)")
        sp.add_argument("--features-out", help="also write the 47 float32 values per utterance (NaN = missing)")
        sp.add_argument("--rate", type=float, help="frames per second at most (default: 90 %% of the daemon's limit)")
        sp.add_argument("--wait", type=float, default=5.0, help="seconds without a result before the last ones are "
                                                               "given up (and reported uncovered)")
        sp.add_argument("--no-end", action="store_true", help="leave the conversation open at the daemon "
                                                             "(no ConversationEnd)")
        sp.add_argument("-v", "--verbose", action="store_true")
    return p


def conversation_id(args):
    cid = args.conversation or (Path(args.wav).stem if args.mode == "wav" else None)
    if not cid:
        raise ValueError("--conversation is required")
    if len(cid.encode("utf-8")) > g.MAX_CONVERSATION_ID or any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in cid):
        raise ValueError(f"conversation id {cid!r}: at most {g.MAX_CONVERSATION_ID} bytes, no control characters")
    return cid


def connect(args, cid):
    """(DaemonLink or None, the model's modalities); the link paces to the daemon's limits and is
    subscribed to results and to notices of its refused input."""
    if args.offline:
        return None, ("audio",)
    link = DaemonLink(open_transport(args.unix, args.tcp, args.serial, args.baud), cid, rate=args.rate)
    info = link.model_info()
    sizes = {m["modality"]: m["size"] for m in info["modalities"]}
    if sizes.get("audio") != N_VALUES:
        link.close()
        raise LinkError(f"model {info['name']} takes {sizes.get('audio', 'no')} audio values; this sensor "
                        f"computes the {N_VALUES} of the IEMOCAP recipe (e.g. models/gsdnet-iemocap6)")
    link.start()
    return link, tuple(m["modality"] for m in info["modalities"])


def run(args, session):
    """Runs the mode; returns the microphone failure in endpointer mode, else None."""
    if args.mode == "wav":
        samples, rate = read_wav(args.wav)
        segments = load_segments(args.segments)
        samples = program.drop_spans(samples, rate, args.drop_audio)
        program.run_wav(session, samples, rate, segments, realtime=args.realtime)
        return None
    cap = Capture(shlex.split(args.capture_cmd) if args.capture_cmd else arecord_command(args.device))
    try:
        if args.boundaries:
            with (contextlib.nullcontext(sys.stdin) if args.boundaries == "-" else open(args.boundaries)) as f:
                program.run_boundaries(session, cap, f)
            return None
        program.run_endpointer(session, cap, args.speaker, args.duration)
        return cap.failed if args.duration is None or cap.end_s < args.duration else None
    finally:
        cap.stop()


def main(argv=None):
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="gsdnet-sensor: %(message)s")
    try:
        cid = conversation_id(args)
        extractor = Extractor()
        link, modalities = connect(args, cid)
    except ImportError as e:
        print(f"gsdnet-sensor: {e}: install the sensor extra (pip install 'python[sensor]'; openSMILE's "
              "licence is non-commercial)", file=sys.stderr)
        return 2
    except (ValueError, LinkError, RuntimeError) as e:
        print(f"gsdnet-sensor: {e}", file=sys.stderr)
        return 2
    out = open(args.features_out, "wb") if args.features_out else None
    session = program.Session(extractor, link, modalities, features_out=out)
    try:
        mic_failed = run(args, session)
        report = program.finish(session, args.wait, end=not args.no_end)
    except (WavError, SegmentsError, LinkError, OSError) as e:
        print(f"gsdnet-sensor: {e}", file=sys.stderr)
        return 2
    finally:
        if out:
            out.close()
        if link:
            link.close()
    for line in report.lines():
        print(line)
    return 3 if mic_failed else report.exit_code()
