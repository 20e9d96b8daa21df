#!/usr/bin/env python3
"""Bounded soak test of the real daemon (`gsdnet serve`, release build, tract), loopback only.

Starts `target/release/gsdnet serve` on a temporary board profile (boards/x86-dev.toml with a
Unix socket in a temporary folder, TCP on 127.0.0.1 with an ephemeral port, the bundled model,
generous per-connection frame rates for honest sensors) and runs, concurrently, for --duration
seconds:

- honest sensors (--sensors, default 4), each streaming its own conversation: UtteranceStart,
  Features per modality of the model (its manifest's `[modalities]`; nothing about the others),
  UtteranceEnd, 2-5 utterances/s, real CMU-MOSI features from data/mosi-val.gsdrec (random
  finite values of the manifest's sizes if it cannot be read or does not match), with
  dropouts: a modality reported as `Dropout`, or never sent so that the daemon's deadline closes
  it; every utterance keeps at least one modality (an empty one has no result by design);
- a restarting sensor: every --restart-every seconds it closes its connection, reconnects and
  starts its utterance ids at 0 again on the same conversation id, without `Reset`;
- a persistent subscriber, connected before the first sensor frame and until the daemon exits:
  the ground truth of what was published;
- transient subscribers that connect, read for a while, disconnect and come back;
- a flood client sending valid frames on its own conversation as fast as it can (its input is
  expected to be rejected as `Flood`; none of it counts as honest);
- non-reading clients that send thousands of `StatusRequest`s and never read: some from the
  start, some (--late-non-readers) from 3 s before the end until SIGTERM, so that answers are
  stuck in the daemon's writers when it is asked to stop;
- idle connections that never send anything.

Then: a drain (until every honest utterance is covered, at most --drain seconds), a final
`StatusRequest` (rejected inputs by reason), SIGTERM with every client still connected, and the
time the daemon takes to exit (SIGKILL after --kill-after seconds).

An honest utterance is *covered* when it appears in the `utterances` list of a `WindowResult`
of its conversation seen by the persistent subscriber. Utterance ids are reused after a sensor
restart, so coverage is tracked per (conversation, restart epoch): a result counts for the epoch
current when it was received (the restarting sensor waits, at most 3 s, for its epoch's results
before it restarts), and entries a window still holds from before the restart do not count: the
longest prefix of its `utterances` that repeats the end of the conversation's last window before
the restart (same ids, same availability), then anything before the last drop in ids.

Printed (and written with --json FILE): utterances sent (honest) and covered, by sensor and
epoch; results seen; rejected inputs by reason (and the Health counters where the client knows
the message); max RSS / VmHWM of the daemon; p50/p99 latency from an utterance's last frame to
the first result that lists it, for all utterances and for those with no silent modality (their
latency still includes the deadline of an older utterance of the same conversation that had one:
utterances are released in id order); the daemon's own inference time per window; shutdown time.

Exit status 1 when a check fails: an honest utterance never appears in a result (restart epochs
included), a result reports another availability than what was sent, the daemon crashed or exited
non-zero, shutdown took over --max-shutdown seconds (10), the flood was never rejected as
`Flood`, a subscriber received a frame that does not decode, an honest sensor's connection was
dropped, or the final status request went unanswered. Exit status 2: the daemon did not start.

Only loopback addresses are ever used, and every loop is bounded in time.

    cargo build --release
    python3 -m gsdnet_soak [--duration 180] [--json soak.json]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from gsdnet_ref.paths import ROOT
from gsdnet_soak.profile import read_manifest, write_profile, free_loopback_port, feature_pool
from gsdnet_soak.ledger import Ledger
from gsdnet_soak.clients import connect, request_status, request_health, Sensor, RestartingSensor, Flood, NonReader, Subscriber, RssPoller
from gsdnet_soak.report import tail, summarise, report, closed_by_peer, checks_of


def start_daemon(args, profile: Path, log_path: Path):
    env = dict(os.environ, RUST_LOG=args.rust_log)
    env.pop("NOTIFY_SOCKET", None)
    env.pop("LISTEN_FDS", None)
    env.pop("LISTEN_PID", None)
    log = open(log_path, "wb")
    proc = subprocess.Popen([str(args.gsdnet), "serve", "--board", str(profile)], stdin=subprocess.DEVNULL,
                            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    log.close()
    return proc


def wait_ready(proc, endpoint, sock_path: Path, timeout: float):
    """The first status report once the daemon answers, or None (exited or timed out)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            return None
        if sock_path.exists():
            status = request_status(endpoint, timeout=max(1.0, end - time.monotonic()))
            if status is not None:
                return status
        time.sleep(0.1)
    return None


def stop_daemon(proc, kill_after: float):
    """SIGTERM; (seconds to exit or None if it had to be killed, exit code)."""
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=kill_after)
        return time.monotonic() - t0, code
    except subprocess.TimeoutExpired:
        proc.kill()
        return None, proc.wait()


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python3 -m gsdnet_soak", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=180.0, help="seconds of traffic (default 180)")
    p.add_argument("--gsdnet", type=Path, default=ROOT / "target/release/gsdnet")
    p.add_argument("--model", type=Path, default=ROOT / "models/gsdnet-mosi")
    p.add_argument("--board", type=Path, default=ROOT / "boards/x86-dev.toml",
                   help="profile the temporary one is based on (endpoints and limits replaced)")
    p.add_argument("--recording", type=Path, default=ROOT / "data/mosi-val.gsdrec")
    p.add_argument("--json", type=Path, help="also write the figures and checks here")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sensors", type=int, default=4, help="honest sensors, one conversation each")
    p.add_argument("--min-rate", type=float, default=2.0, help="utterances/s per sensor, lowest")
    p.add_argument("--max-rate", type=float, default=5.0, help="utterances/s per sensor, highest")
    p.add_argument("--dropout-p", type=float, default=0.15, help="per modality: sent as Dropout")
    p.add_argument("--silent-p", type=float, default=0.10, help="per modality: never sent (deadline)")
    p.add_argument("--restart-every", type=float, default=None,
                   help="seconds between restarts of the restarting sensor (default: duration / 3)")
    p.add_argument("--subscribers", type=int, default=3, help="transient subscribers")
    p.add_argument("--non-readers", type=int, default=2, help="clients that send StatusRequests, never read")
    p.add_argument("--late-non-readers", type=int, default=2,
                   help="non-readers that start 3 s before the end and are still sending at SIGTERM")
    p.add_argument("--status-requests", type=int, default=6000, help="StatusRequests per non-reader")
    p.add_argument("--idle", type=int, default=8, help="connections that never send anything")
    p.add_argument("--flood-fps", type=float, default=0, help="flood frame rate (0 = as fast as possible)")
    p.add_argument("--max-fps", type=int, default=200, help="profile max_frames_per_second per connection")
    p.add_argument("--burst", type=int, default=100, help="profile burst per connection")
    p.add_argument("--threads", type=int, default=1, help="profile engine threads")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a profile key (TOML value), e.g. --set assembly.window=32")
    p.add_argument("--drain", type=float, default=10.0, help="max seconds to wait for results at the end")
    p.add_argument("--max-shutdown", type=float, default=10.0, help="longest acceptable exit after SIGTERM")
    p.add_argument("--kill-after", type=float, default=20.0, help="SIGKILL the daemon after this long")
    p.add_argument("--rust-log", default="warn", help="RUST_LOG of the daemon")
    p.add_argument("--log", type=Path, help="copy the daemon's log here")
    a = p.parse_args(argv)
    if a.restart_every is None:
        a.restart_every = max(2.0, a.duration / 3)
    if not 0 < a.min_rate <= a.max_rate:
        p.error("need 0 < --min-rate <= --max-rate")
    return a


class Fleet:
    """The soak's clients once the daemon answers: idle connections, non-readers (early and
    late), the flood, transient subscribers, the honest sensors and the restarting sensor. Owns
    their two stop events: `stop` ends the traffic, `stop_late` the late non-readers (set only
    after SIGTERM, so their answers are stuck in the daemon's writers when it stops)."""

    def __init__(self, args, unix, tcp, manifest, pool, ledger, rng, until: float):
        self.stop, self.stop_late = threading.Event(), threading.Event()
        self.idle = [connect(unix if i % 2 == 0 else tcp) for i in range(args.idle)]
        # Paced below the per-connection rate, spread over the first 60 % of the run.
        rate = max(1.0, min(0.8 * args.max_fps, args.status_requests / max(1.0, 0.6 * args.duration)))
        self.non_readers = [NonReader(f"non-reader-{i}", unix, args.status_requests, rate, self.stop)
                            for i in range(args.non_readers)]
        # Late ones start 3 s before the end and stop sending only at SIGTERM.
        self.non_readers += [NonReader(f"late-non-reader-{i}", unix if i % 2 == 0 else tcp,
                                       args.status_requests, 0.8 * args.max_fps, self.stop_late,
                                       start_at=until - min(3.0, args.duration / 2))
                             for i in range(args.late_non_readers)]
        self.flood = Flood(unix, "soak-flood", manifest["dims"], self.stop, args.flood_fps,
                           random.Random(rng.random()))
        self.transients = [Subscriber(f"transient-{i}", unix if i % 2 == 0 else tcp, self.stop,
                                      rng=random.Random(rng.random())) for i in range(args.subscribers)]
        self.sensors = [Sensor(f"sensor-{i}", f"soak-sensor-{i}", unix if i % 2 == 0 else tcp, pool, ledger,
                               self.stop, until, random.Random(rng.random()), args) for i in range(args.sensors)]
        self.restart = RestartingSensor("restarting", "soak-restarting", unix, pool, ledger, self.stop, until,
                                        random.Random(rng.random()), args, every=args.restart_every)
        self.workers = [*self.non_readers, self.flood, *self.transients, *self.sensors, self.restart]

    def start(self) -> None:
        for w in self.workers:
            w.start()

    def wait_senders(self, proc, began: float):
        """Joins the sensors; the traffic stops at once if the daemon exits. Returns the second
        of the run at which it was seen gone, or None."""
        crashed_during = None
        for w in (*self.sensors, self.restart):
            while w.is_alive():
                w.join(0.5)
                if proc.poll() is not None and crashed_during is None:
                    crashed_during = time.monotonic() - began
                    self.stop.set()
        self.stop.set()
        for w in (self.flood, *self.transients):
            w.join(5)
        return crashed_during

    def close(self) -> None:
        self.stop.set()
        self.stop_late.set()
        for s in self.idle:
            s.close()
        for n in self.non_readers:
            n.close()


def await_daemon(proc, unix, sock_path: Path, log_path: Path) -> None:
    """Returns once the daemon answers a status request; exit status 2 if it never does."""
    if wait_ready(proc, unix, sock_path, timeout=120) is None:
        print(f"soak: the daemon did not start\n{tail(log_path)}", file=sys.stderr)
        proc.kill()
        raise SystemExit(2)


def start_persistent(unix, ledger):
    """The ground-truth subscriber, connected before the first sensor frame."""
    persistent = Subscriber("persistent", unix, threading.Event(), ledger=ledger, persistent=True)
    persistent.start()
    if not persistent.ready.wait(10):
        raise SystemExit(f"soak: the persistent subscriber got no answer ({persistent.error})")
    return persistent


def finish(proc, fleet: Fleet, ledger, persistent, unix, args, began: float) -> dict:
    """After the traffic: drain, final status and health, idle connections closed by the
    daemon, SIGTERM with every client connected. The figures of the end of the run."""
    crashed_during = fleet.wait_senders(proc, began)
    alive = proc.poll() is None
    end = dict(drained=ledger.wait_covered(args.drain) if alive else False,
               final_status=request_status(unix) if alive else None,
               health=request_health(unix, timeout=2.0) if alive else None,
               idle_closed_by_daemon=sum(1 for s in fleet.idle if closed_by_peer(s)))
    crashed = proc.poll() is not None
    if crashed and crashed_during is None:
        crashed_during = time.monotonic() - began
    fleet.stop_late.set()
    shutdown_s, code = (None, proc.returncode) if crashed else stop_daemon(proc, args.kill_after)
    persistent.join(3)
    persistent.stop.set()
    persistent.join(2)
    return dict(end, shutdown_s=shutdown_s, exit_code=code, crashed_at_s=crashed_during)


def figures(args, source, ledger, fleet: Fleet, persistent, rss, end: dict) -> dict:
    """Every figure of the run (printed, written with --json, judged by checks_of)."""
    fig = summarise(ledger, fleet.restart)
    fig.update({
        "max_shutdown_s": args.max_shutdown,
        "duration_s": args.duration,
        "features": source,
        "results_seen": persistent.results,
        "results_by_conversation": ledger.results_by_conv,
        "transient_results": sum(t.results for t in fleet.transients),
        "transient_sessions": sum(t.sessions for t in fleet.transients),
        "final_status": end["final_status"],
        "health": end["health"],
        "drained": end["drained"],
        "flood_frames_sent": fleet.flood.frames_sent,
        "non_readers": [{"name": n.name, "sent": n.sent, "blocked": n.blocked, "disconnected": n.disconnected}
                        for n in fleet.non_readers],
        "idle_connections": len(fleet.idle),
        "idle_closed_by_daemon": end["idle_closed_by_daemon"],
        "restarts": fleet.restart.restarts,
        "rss_start_kib": rss.first_rss,
        "rss_max_kib": rss.max_rss or None,
        "vmhwm_kib": rss.hwm or None,
        "shutdown_s": end["shutdown_s"],
        "kill_after_s": args.kill_after,
        "exit_code": end["exit_code"],
        "crashed_at_s": end["crashed_at_s"],
        "worker_errors": {w.name: w.error for w in [*fleet.workers, persistent] if w.error},
    })
    return fig


def run_soak(args) -> tuple:
    """Runs the scenario; (figures, checks, daemon log tail)."""
    if not args.gsdnet.exists():
        raise SystemExit(f"{args.gsdnet} not found: cargo build --release")
    rng = random.Random(args.seed)
    manifest = read_manifest(args.model)
    args.dims = manifest["dims"]  # the sensors send the model's modalities only
    pool, source = feature_pool(args, manifest, rng)
    with tempfile.TemporaryDirectory(prefix="gsdnet-soak-") as d:
        tmp = Path(d)
        sock_path = tmp / "gsdnet.sock"
        unix, tcp = ("unix", sock_path), ("tcp", free_loopback_port())
        profile = write_profile(tmp, args, sock_path, tcp[1], conversations=args.sensors + 4)
        log_path = tmp / "daemon.log"
        proc = start_daemon(args, profile, log_path)
        stop_rss, fleet = threading.Event(), None
        try:
            await_daemon(proc, unix, sock_path, log_path)
            rss = RssPoller(proc.pid, stop_rss)
            rss.start()
            ledger = Ledger()
            persistent = start_persistent(unix, ledger)
            began = time.monotonic()
            fleet = Fleet(args, unix, tcp, manifest, pool, ledger, rng, until=began + args.duration)
            fleet.start()
            end = finish(proc, fleet, ledger, persistent, unix, args, began)
        finally:
            if fleet is not None:
                fleet.close()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            stop_rss.set()
            if args.log:
                args.log.write_bytes(log_path.read_bytes())
            log_tail = tail(log_path)
    fig = figures(args, source, ledger, fleet, persistent, rss, end)
    return fig, checks_of(fig, fleet.sensors, fleet.restart, persistent, fleet.transients), log_tail


def main(argv=None) -> int:
    args = parse_args(argv)
    fig, checks, log_tail = run_soak(args)
    report(fig, checks)
    failed = [n for n, ok, _ in checks if not ok]
    if fig["worker_errors"]:
        print(f"client errors: {fig['worker_errors']}")
    if failed:
        print(f"\nsoak: FAILED ({len(failed)} of {len(checks)} checks)\n--- daemon log (tail) ---\n{log_tail}")
    else:
        print(f"\nsoak: passed ({len(checks)} checks)")
    if args.json:
        fig["checks"] = [{"name": n, "ok": ok, "detail": d} for n, ok, d in checks]
        args.json.write_text(json.dumps(fig, indent=2, default=str) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
