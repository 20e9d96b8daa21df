"""Resident memory of the real daemon (`gsdnet serve`, tract) while it processes a recording, and
the throughput of its inference step (`gsdnet bench-throughput`).

Owns: a temporary board profile (x86-dev with one Unix socket, the bundled model, one engine
thread, the profile's `max_batch` and `batch_latency_ms`), starting the daemon, replaying a
recording into it with `gsdnet replay --interval-ms 40 --mask-rate R` (so the sampler runs),
waiting until its status reports every window done, and reading VmHWM / VmRSS from /proc (target:
under 64 MB). Then `gsdnet bench-throughput --json` on the same profile: windows per second and
per core for 1, 2, 4, 8 concurrent conversations of CMU-MOSI videos (../shared/data/cmu-mosi/val;
skipped, saying so, when missing), one window at a time vs batches of 8, the single-window
latency, and an estimate of the conversations one Jetson Orin CPU core (Cortex-A78AE) sustains
at one utterance per 3 s each (x86 windows per core-second x `--arm-core-ratio` x 3 s).

It runs the production `gsdnet` binary as deployed (system allocator; allocation counts come from
`gsdnet-bench`, not from here). Used by gsdnet_bench.reference (docs/results/bench-report.md) and runnable alone:
    python3 -m gsdnet_bench.daemon [--gsdnet target/release/gsdnet] [--rate 0.3] [--no-throughput]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import re
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import gsdnet_client
from gsdnet_ref.paths import ROOT, SHARED_DATA


def _vm(pid: int) -> dict:
    text = Path(f"/proc/{pid}/status").read_text()
    return {k: int(re.search(rf"^{k}:\s+(\d+) kB", text, re.M).group(1)) for k in ("VmHWM", "VmRSS")}


def _profile(tmp: Path, model: Path) -> Path:
    text = (ROOT / "boards" / "x86-dev.toml").read_text()
    text = re.sub(r"^models = .*$", f'models = "{model}"', text, flags=re.M)
    text = re.sub(r"^threads = \d+", "threads = 1", text, flags=re.M)
    text = re.sub(r"^tcp = .*$", "tcp = []", text, flags=re.M)
    text = re.sub(r"^unix = .*$", f'unix = ["{tmp / "gsdnet.sock"}"]', text, flags=re.M)
    # The replay is ~75x faster than people speak: lift the flood limit, not the work; every
    # val video gets its own conversation slot.
    text = re.sub(r"^max_frames_per_second = \d+", "max_frames_per_second = 1000000", text, flags=re.M)
    text = re.sub(r"^burst = \d+", "burst = 1000000", text, flags=re.M)
    text = re.sub(r"^max_total_frames_per_second = \d+", "max_total_frames_per_second = 1000000", text, flags=re.M)
    text = re.sub(r"^total_burst = \d+", "total_burst = 1000000", text, flags=re.M)
    text = re.sub(r"^max_conversations = \d+", "max_conversations = 64", text, flags=re.M)
    path = tmp / "board.toml"
    path.write_text(text)
    return path


def _status(sock: Path) -> dict:
    import socket
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(str(sock))
        s.sendall(gsdnet_client.frame(gsdnet_client.status_request()))
        return gsdnet_client.receive(s, gsdnet_client.FrameDecoder(), gsdnet_client.STATUS)


DEFAULT_DATA = SHARED_DATA / "cmu-mosi/val"


def measure(binary: Path, model: Path, recording: Path, rate: float, timeout: float = 300,
            data: Path | None = DEFAULT_DATA, windows: int = 400, arm_core_ratio: float | None = None) -> dict:
    """VmHWM/VmRSS (KiB) of the daemon after replaying `recording`, plus its status counters and,
    unless `data` is None, `throughput`: the summary of `gsdnet bench-throughput` on `data` with
    the Jetson estimate (or why it was not measured)."""
    r = _memory(binary, model, recording, rate, timeout)
    if data is not None:
        r["throughput"], _ = _throughput_summary(binary, model, data, rate, windows, arm_core_ratio or ARM_CORE_RATIO)
    return r


def _throughput_summary(binary: Path, model: Path, data: Path, rate: float, windows: int, ratio: float):
    """(summary with the Jetson estimate, the tool's table), or ("not measured: why", None)."""
    try:
        t = throughput(binary, model, data, rate, windows)
    except SystemExit as e:
        return f"not measured: {e}", None
    return dict(t["summary"], **estimate(t["summary"], ratio), bench_peak_rss_mib=t.get("peak_rss_mib")), t["table"]


def _memory(binary: Path, model: Path, recording: Path, rate: float, timeout: float) -> dict:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        sock = tmp / "gsdnet.sock"
        env = dict(os.environ, RUST_LOG="warn")
        daemon = subprocess.Popen([str(binary), "serve", "--board", str(_profile(tmp, model))],
                                  stderr=subprocess.PIPE, text=True, env=env)
        try:
            began = time.time()
            while not sock.exists():
                if daemon.poll() is not None or time.time() - began > 60:
                    raise SystemExit(f"daemon did not start: {daemon.stderr.read()}")
                time.sleep(0.05)
            idle = _vm(daemon.pid)
            # --models: only the model's modalities are sent, the mask is over them (protocol v2).
            subprocess.run([str(binary), "replay", str(recording), "--unix", str(sock), "--models", str(model),
                            "--interval-ms", "40", "--mask-rate", str(rate)], check=True,
                           stdout=subprocess.DEVNULL, env=env)
            last, status = None, {}
            while time.time() - began < timeout:
                time.sleep(1.0)
                status = _status(sock)
                key = {k: v for k, v in status.items() if "window" in k or "result" in k}
                if key == last and key:
                    break
                last = key
            vm = _vm(daemon.pid)
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=30)
    return dict(idle_rss_kib=idle["VmRSS"], peak_rss_kib=vm["VmHWM"], rss_kib=vm["VmRSS"],
                status=status)


# Per-core speed of a Jetson AGX Orin CPU core (Cortex-A78AE, 2.2 GHz) relative to the x86 core
# this runs on. ASSUMPTION, not a measurement: Geekbench 5 single-core is roughly 750 for the
# AGX Orin and roughly 1500 for a current x86 server/desktop core (Zen 3/4, Ice Lake and later at
# 3-4 GHz), i.e. about 0.5; scale by clock for the Orin NX (2.0 GHz) and Nano (1.5-1.7 GHz).
# tract's NEON kernels vs its AVX2 ones are not modelled. Measure on the board to replace it.
ARM_CORE_RATIO = 0.5
SECONDS_PER_UTTERANCE = 3.0
RSS_TARGET_MB = 64.0


def throughput(binary: Path, model: Path, data: Path, rate: float, windows: int) -> dict:
    """`gsdnet bench-throughput --json` on the daemon's profile: its rows, summary and peak RSS
    (MiB); raises SystemExit with the tool's message when it cannot measure (e.g. no data)."""
    with tempfile.TemporaryDirectory() as d:
        profile = _profile(Path(d), model)
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        out = subprocess.run([str(binary), "bench-throughput", "--board", str(profile), "--data", str(data),
                              "--rate", str(rate), "--windows", str(windows), "--json"],
                             capture_output=True, text=True, env=dict(os.environ, RUST_LOG="warn", RUST_BACKTRACE="0"))
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if out.returncode != 0:
        raise SystemExit(out.stderr.strip().splitlines()[0] if out.stderr.strip() else f"exit {out.returncode}")
    report = json.loads(out.stdout.strip().splitlines()[-1])
    # ru_maxrss of children is the largest of any child so far: only meaningful if it grew.
    report["peak_rss_mib"] = peak_kib / 1024 if peak_kib > before else None
    report["table"] = "\n".join(out.stdout.strip().splitlines()[:-1])
    return report


def estimate(summary: dict, ratio: float) -> dict:
    """Conversations one Cortex-A78AE core sustains at one utterance per 3 s each, from the best
    x86 windows per core-second measured (batched or not) scaled by the assumed per-core ratio."""
    per = [v for v in (summary.get("single_windows_per_core_s"), summary.get("batched_windows_per_core_s")) if v]
    best = max(per) if per else 0.0
    return dict(arm_core_ratio=ratio, a78ae_windows_per_s=best * ratio,
                a78ae_conversations_per_core=best * ratio * SECONDS_PER_UTTERANCE)


def report_throughput(t, table: str | None) -> None:
    if isinstance(t, str):
        print(f"throughput: {t}")
        return
    if table:
        print(table)
    single, batched = t.get("single_windows_per_core_s"), t.get("batched_windows_per_core_s")
    lat = t.get("single_window_latency_p50_us")
    fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
    ratio = "-" if t.get("ratio") is None else f"{t['ratio']:.2f}x"
    print(f"throughput: {t['conversations']} conversations: {fmt(batched)} windows/core-s with batches of up to "
          f"{t['max_batch']} vs {fmt(single)} one window at a time (ratio {ratio}); single-window latency p50 "
          + ("-" if lat is None else f"{lat / 1000:.2f} ms"))
    if t.get("bench_peak_rss_mib"):
        print(f"bench-throughput peak RSS (batches of {t['max_batch']}): {t['bench_peak_rss_mib']:.1f} MiB")
    print(f"estimate: one Jetson Orin CPU core (Cortex-A78AE) ~{t['a78ae_windows_per_s']:.0f} windows/s = "
          f"~{t['a78ae_conversations_per_core']:.0f} concurrent conversations at one utterance per "
          f"{SECONDS_PER_UTTERANCE:.0f} s each (best x86 windows/core-s x per-core ratio {t['arm_core_ratio']}, "
          "assumed from Geekbench 5 single-core, AGX Orin at 2.2 GHz vs this x86 core: an estimate, not measured "
          "on the board)")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gsdnet", type=Path, default=ROOT / "target/release/gsdnet")
    p.add_argument("--model", type=Path, default=ROOT / "models/gsdnet-mosi")
    p.add_argument("--recording", type=Path, default=ROOT / "data/mosi-val.gsdrec")
    p.add_argument("--rate", type=float, default=0.3)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA,
                   help="CMU-MOSI split whose videos make the throughput stream")
    p.add_argument("--windows", type=int, default=400, help="windows measured per throughput row")
    p.add_argument("--arm-core-ratio", type=float, default=ARM_CORE_RATIO,
                   help="assumed per-core speed of a Cortex-A78AE relative to this x86 core")
    p.add_argument("--no-throughput", action="store_true")
    a = p.parse_args()
    r = measure(a.gsdnet, a.model.resolve(), a.recording, a.rate, data=None)
    for k, v in r.items():
        print(f"{k}: {v}")
    peak_mb = r["peak_rss_kib"] * 1024 / 1e6
    print(f"daemon peak RSS: {peak_mb:.1f} MB (target under {RSS_TARGET_MB:.0f} MB): "
          f"{'met' if peak_mb < RSS_TARGET_MB else 'MISSED'}")
    if not a.no_throughput:
        report_throughput(*_throughput_summary(a.gsdnet, a.model.resolve(), a.data, a.rate, a.windows,
                                               a.arm_core_ratio))


if __name__ == "__main__":
    main()
