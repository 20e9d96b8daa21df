"""Resident memory of the real daemon (`gsdnet serve`, tract) while it processes a recording.

Owns: a temporary board profile (x86-dev with one Unix socket, the bundled model), starting the
daemon, replaying a recording into it with `gsdnet replay --interval-ms 40 --mask-rate R` (so the
sampler runs), waiting until its status reports every window done, and reading VmHWM / VmRSS
from /proc. It runs the production `gsdnet` binary as deployed (system allocator; allocation
counts come from `gsdnet-bench`, not from here). Used by bench_reference.py (docs/BENCHMARKS.md)
and runnable alone:
    python3 scripts/bench_daemon.py [--gsdnet target/release/gsdnet] [--rate 0.3]
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import gsdnet_client  # noqa: E402


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


def measure(binary: Path, model: Path, recording: Path, rate: float, timeout: float = 300) -> dict:
    """VmHWM/VmRSS (KiB) of the daemon after replaying `recording`, plus its status counters."""
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


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gsdnet", type=Path, default=ROOT / "target/release/gsdnet")
    p.add_argument("--model", type=Path, default=ROOT / "models/gsdnet-mosi")
    p.add_argument("--recording", type=Path, default=ROOT / "data/mosi-val.gsdrec")
    p.add_argument("--rate", type=float, default=0.3)
    a = p.parse_args()
    r = measure(a.gsdnet, a.model.resolve(), a.recording, a.rate)
    for k, v in r.items():
        print(f"{k}: {v}")


if __name__ == "__main__":
    main()
