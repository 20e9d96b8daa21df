"""A few seconds of the text-frontend daemon benchmark (`python -m gsdnet_bench.frontend_daemon`)
against the release daemon: 2 conversations sending transcripts + audio to models/gsdnet-iemocap6.
Checks the report's shape, that the daemon warmed the encoder for every batch shape before READY,
and that every utterance sent was covered by a result with both modalities and nothing was
refused; the latencies are reported, never compared with the target.

Skipped (saying what is missing) without target/release/gsdnet or the model's text frontend
(models/frontends, bash scripts/setup-frontends.sh)."""
import json
import re
import subprocess
import sys

import pytest

from conftest import ROOT
from gsdnet_bench.frontend_daemon import DEFAULT_BINARY, DEFAULT_MODEL, frontend_missing


def missing():
    if not DEFAULT_BINARY.exists():
        return f"{DEFAULT_BINARY} (cargo build --release)"
    return frontend_missing(DEFAULT_MODEL)


@pytest.mark.skipif(bool(missing()), reason=f"needs {missing()}")
def test_short_frontend_daemon_run_reports_latency_and_memory(tmp_path):
    out = tmp_path / "frontend-daemon.json"
    cmd = [sys.executable, "-m", "gsdnet_bench.frontend_daemon", "--conversations", "2", "--interval", "0.5",
           "--duration", "3", "--fast-interval", "0.25", "--fast-duration", "2", "--runs", "dialogue,fast",
           "--drain", "10",
           "--json", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert "p99 / 50 ms" in proc.stdout
    report = json.loads(out.read_text())
    assert report["model"] == "gsdnet-iemocap6"
    assert report["memory_idle"]["rss_kib"] > 0
    assert report["memory_idle"]["hwm_kib"] >= report["memory_idle"]["rss_kib"]
    # The daemon readied the encoder for every batch shape before READY: 1, 2, 4, 8, 16 rows x the
    # 8 seq buckets (8 ... 128 tokens).
    warmed = re.search(r"ready for (\d+) shapes", report["frontend_warmup"] or "")
    assert warmed and int(warmed.group(1)) == 4 * 8, report["frontend_warmup"]  # 1, 2, 4, 8 rows x 8 seq buckets
    assert [r["name"] for r in report["runs"]] == ["dialogue-1", "fast-2"]
    for run in report["runs"]:
        assert run["conversations"] == 2
        assert run["utterances_sent"] > 2
        # Every utterance got a result, computed with its transcript and its audio (avail T + A).
        assert run["utterances_covered"] == run["utterances_sent"] == run["text_and_audio"], run
        assert run["refused"] == {} and run["bad_frames"] == 0, run
        assert run["status_since_start"]["inference_errors"] == 0 and run["status_since_start"]["rejected"] == {}, run
        lat = run["latency_ms"]
        assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"], lat
        assert run["p99_ratio"] == pytest.approx(lat["p99"] / run["target_p99_ms"])
        assert run["memory_after"]["hwm_kib"] >= report["memory_idle"]["rss_kib"]
