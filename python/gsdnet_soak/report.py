"""Figures, checks and the printed report of the soak (gsdnet_soak.__main__)."""
from __future__ import annotations

import math
import socket
from pathlib import Path

import gsdnet_client as gc
from gsdnet_soak.clients import RestartingSensor
from gsdnet_soak.ledger import Ledger

MODALITIES = gc.MODALITIES  # ("text", "audio", "visual"), avail bits 1, 2, 4
LOOPBACK = "127.0.0.1"


def tail(path: Path, n: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


# ---- figures --------------------------------------------------------------------------------

def percentile(xs: list, q: float):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, math.ceil(q / 100 * len(xs)) - 1))]


def none_or(x, scale):
    return None if x is None else x * scale


def summarise(ledger: Ledger, restart: RestartingSensor) -> dict:
    by = {}
    lat_all, lat_complete, avail_bad = [], [], []
    with ledger.lock:
        for (conv, epoch, utt), u in ledger.utts.items():
            key = f"{u.sensor} epoch {epoch}" if u.sensor == restart.name else u.sensor
            row = by.setdefault(key, {"sent": 0, "covered": 0, "missing": []})
            row["sent"] += 1
            if u.seen is None:
                row["missing"].append(utt)
                continue
            row["covered"] += 1
            if u.t_last is not None:
                ms = max(0.0, u.seen - u.t_last) * 1000
                lat_all.append(ms)
                if not u.silent:
                    lat_complete.append(ms)
            if u.seen_avail != u.avail:
                avail_bad.append({"conversation": conv, "epoch": epoch, "utterance": utt,
                                  "sent": u.avail, "published": u.seen_avail})
    for row in by.values():
        row["missing"] = sorted(row["missing"])
    sent = sum(r["sent"] for r in by.values())
    covered = sum(r["covered"] for r in by.values())
    after = {k: v for k, v in by.items() if " epoch " in k and not k.endswith(" epoch 0")}
    return {
        "utterances_sent": sent,
        "utterances_covered": covered,
        "by_sensor": by,
        "restart_epochs": {k: {"sent": v["sent"], "covered": v["covered"]} for k, v in after.items()},
        "latency_ms": {"p50": percentile(lat_all, 50), "p99": percentile(lat_all, 99),
                       "max": max(lat_all, default=None), "n": len(lat_all)},
        "latency_complete_ms": {"p50": percentile(lat_complete, 50), "p99": percentile(lat_complete, 99),
                                "n": len(lat_complete)},
        "inference_ms": {"p50": none_or(percentile(ledger.inference_us, 50), 1e-3),
                         "p99": none_or(percentile(ledger.inference_us, 99), 1e-3), "n": len(ledger.inference_us)},
        "avail_mismatches": avail_bad[:20],
        "avail_mismatch_count": len(avail_bad),
    }


def fmt(x, unit=""):
    return "-" if x is None else (f"{x:.1f}{unit}" if isinstance(x, float) else f"{x}{unit}")


def report(fig: dict, checks: list):
    print("\n== soak figures ==")
    print(f"duration {fig['duration_s']:.0f} s, features: {fig['features']}")
    print(f"utterances sent (honest): {fig['utterances_sent']}, covered by published results: "
          f"{fig['utterances_covered']}")
    for name, row in sorted(fig["by_sensor"].items()):
        miss = row["missing"]
        more = f" missing {miss[:12]}{' ...' if len(miss) > 12 else ''}" if miss else ""
        print(f"  {name:22s} sent {row['sent']:5d} covered {row['covered']:5d}{more}")
    print(f"results seen by the persistent subscriber: {fig['results_seen']}, transient: "
          f"{fig['transient_results']} in {fig['transient_sessions']} sessions")
    st = fig.get("final_status") or {}
    print(f"rejected by reason: {st.get('rejected', '-')}")
    for k in ("frames_accepted", "windows_run", "windows_superseded", "windows_dropped", "inference_errors",
              "results_published", "open_conversations", "clients", "empty_utterances"):
        if k in st:
            print(f"  {k}: {st[k]}")
    if fig.get("health"):
        print(f"health: {fig['health']}")
    print(f"flood: {fig['flood_frames_sent']} frames sent; non-readers: {fig['non_readers']}")
    print(f"idle connections: {fig['idle_connections']} (closed by the daemon before SIGTERM: "
          f"{fig['idle_closed_by_daemon']})")
    lat, latc = fig["latency_ms"], fig["latency_complete_ms"]
    print(f"latency last frame -> result: p50 {fmt(lat['p50'], ' ms')} p99 {fmt(lat['p99'], ' ms')} "
          f"max {fmt(lat['max'], ' ms')} (n {lat['n']}); without silent modalities: p50 "
          f"{fmt(latc['p50'], ' ms')} p99 {fmt(latc['p99'], ' ms')} (n {latc['n']})")
    inf = fig["inference_ms"]
    print(f"inference per window (the results' latency_us): p50 {fmt(inf['p50'], ' ms')} "
          f"p99 {fmt(inf['p99'], ' ms')} (n {inf['n']})")
    print(f"daemon RSS: start {fmt(fig['rss_start_kib'], ' KiB')}, max {fmt(fig['rss_max_kib'], ' KiB')}, "
          f"VmHWM {fmt(fig['vmhwm_kib'], ' KiB')}")
    sd = fig["shutdown_s"]
    print(f"shutdown after SIGTERM: {'killed after ' + fmt(fig['kill_after_s'], ' s') if sd is None else f'{sd:.2f} s'}"
          f", exit code {fig['exit_code']}")
    print("\n== checks ==")
    for name, ok, detail in checks:
        print(f"  {'PASS' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}")


# ---- main -----------------------------------------------------------------------------------

def closed_by_peer(s: socket.socket) -> bool:
    """Whether the daemon closed this (otherwise silent) connection."""
    s.setblocking(False)
    try:
        return s.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def checks_of(fig, sensors, restart, persistent, transients) -> list:
    st = fig["final_status"] or {}
    rejected = st.get("rejected", {})
    missing = {k: v["missing"] for k, v in fig["by_sensor"].items() if v["missing"]}
    steady = {k: v for k, v in missing.items() if " epoch " not in k or k.endswith(" epoch 0")}
    after = {k: v for k, v in missing.items() if k not in steady}
    sd = fig["shutdown_s"]
    disconnects = {s.name: s.disconnects for s in (*sensors, restart) if s.disconnects}
    return [
        ("daemon did not crash", fig["crashed_at_s"] is None,
         "" if fig["crashed_at_s"] is None else f"exited on its own {fig['crashed_at_s']:.1f} s into the run"),
        ("every honest utterance covered", not steady,
         "" if not steady else "; ".join(f"{k}: {len(v)} missing" for k, v in steady.items())),
        ("utterances after a sensor restart covered", not after and restart.restarts > 0,
         f"{restart.restarts} restarts" + ("" if not after else "; " + "; ".join(
             f"{k}: {len(v)} of {fig['by_sensor'][k]['sent']} missing" for k, v in after.items()))),
        ("published availability matches what was sent", fig["avail_mismatch_count"] == 0,
         "" if not fig["avail_mismatch_count"] else f"{fig['avail_mismatch_count']} mismatches"),
        ("final status answered", bool(st), ""),
        ("flood rejected as Flood", rejected.get("Flood", 0) > 0, f"Flood {rejected.get('Flood', 0)}"),
        ("subscribers decoded every frame", persistent.bad_frames + sum(t.bad_frames for t in transients) == 0, ""),
        ("honest sensors never disconnected", not disconnects, str(disconnects) if disconnects else ""),
        (f"shutdown within {fig['max_shutdown_s']:g} s", sd is not None and sd <= fig["max_shutdown_s"],
         "hung: killed" if sd is None and fig["crashed_at_s"] is None else ("-" if sd is None else f"{sd:.2f} s")),
        ("exit code 0 after SIGTERM", fig["exit_code"] == 0, f"exit code {fig['exit_code']}"),
    ]
