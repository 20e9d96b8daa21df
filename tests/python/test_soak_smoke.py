"""A short run of the soak (`python3 -m gsdnet_soak`) against the release daemon (about 20 s).

Every soak client runs: two honest sensors with dropouts, a restarting sensor (two restarts),
persistent and transient subscribers, a flood (capped at 20000 frames/s so that CI's two cores
are not all spent on it), a non-reading client and idle connections, then SIGTERM. The soak's
own checks must all pass: nothing accepted is lost, the restart is recovered, shutdown takes at
most 10 s. Skipped when target/release/gsdnet has not been built (`cargo build --release`, or
any `cargo test --release`).
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GSDNET = ROOT / "target" / "release" / "gsdnet"


@pytest.mark.skipif(not GSDNET.exists(), reason="target/release/gsdnet not built (cargo build --release)")
def test_short_soak_passes_every_check(tmp_path):
    out = tmp_path / "soak.json"
    cmd = [
        sys.executable, "-m", "gsdnet_soak", "--gsdnet", str(GSDNET),
        "--duration", "8", "--sensors", "2", "--subscribers", "1", "--idle", "2",
        "--non-readers", "1", "--status-requests", "2000", "--restart-every", "2.5",
        "--flood-fps", "20000", "--drain", "4", "--kill-after", "12", "--json", str(out),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90, cwd=ROOT)
    assert out.exists(), (f"soak wrote no figures (exit {proc.returncode}):\n"
                          f"{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}")
    fig = json.loads(out.read_text())
    failed = [c for c in fig["checks"] if not c["ok"]]
    assert fig["utterances_sent"] > 0
    assert not failed and proc.returncode == 0, f"failed checks: {failed}\n{proc.stdout[-4000:]}"
