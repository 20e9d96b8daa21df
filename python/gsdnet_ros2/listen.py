"""An example ROS 2 subscriber of the daemon's emotions, on CycloneDDS without a ROS installation
(`python -m gsdnet_ros2.listen --domain N [--namespace /]`).

Owns: printing, for each `gsdnet_msgs/EmotionWindow` on `<namespace>/gsdnet/emotions`, the
utterance whose end triggered it (the window's last; earlier ones are re-estimated with more
context, so a consumer keeps the latest per utterance), with `--notices` the refusals on
`gsdnet/notices` as well. Runs until Ctrl-C, `--count` windows or `--duration` seconds. Loopback
only (gsdnet_ros2.dds): a daemon on another host needs a CycloneDDS configuration for that
network instead. A node of a ROS 2 installation reads the same topic with
`ros2 topic echo /gsdnet/emotions gsdnet_msgs/msg/EmotionWindow` once gsdnet_msgs is built.
"""
from __future__ import annotations

import argparse
import sys
import time

from gsdnet_ros2 import dds, msgs


def line(w: msgs.EmotionWindow) -> str:
    """One line for the window's closing utterance."""
    u = next((e for e in reversed(w.utterances) if e.utterance == w.closed_utterance), None)
    if u is None:
        return f"{w.conversation} #{w.closed_utterance}: (no result)"
    names = lambda bits: "+".join(m for m, b in msgs.MODALITY_BITS.items() if bits & b) or "none"
    reg = f" regression {u.regression:+.3f}" if u.has_regression else ""
    flag = " UNCERTAIN" if u.uncertain else ""
    return (f"{w.conversation} #{u.utterance} speaker {u.speaker}: {u.label_name} {u.confidence:.2f}{flag}{reg}"
            f" (observed {names(u.observed)}, completed {names(u.completed)} by {w.completion})")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Print the emotion of each utterance the gsdnet daemon publishes.")
    p.add_argument("--domain", type=int, required=True, help="ROS_DOMAIN_ID of the daemon")
    p.add_argument("--namespace", default="/", help="the daemon's [ros2] namespace")
    p.add_argument("--notices", action="store_true", help="print refused input as well")
    p.add_argument("--count", type=int, default=0, help="stop after this many windows (0: never)")
    p.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0: never)")
    a = p.parse_args(argv)
    seen = 0
    until = time.monotonic() + a.duration if a.duration > 0 else None
    with dds.Ros2Peer(a.domain, a.namespace) as peer:
        emotions = peer.reader(dds.EMOTIONS)
        notices = peer.reader(dds.NOTICES) if a.notices else None
        print(f"listening on {dds.resolve(dds.EMOTIONS, a.namespace)} (domain {a.domain})", flush=True)
        try:
            while (not a.count or seen < a.count) and (until is None or time.monotonic() < until):
                for w in dds.take(emotions):
                    print(line(w), flush=True)
                    seen += 1
                for n in dds.take(notices) if notices is not None else ():
                    print(f"refused {n.count} x {n.reason_name} ({n.conversation or '-'}): {n.detail}", flush=True)
                time.sleep(0.02)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
