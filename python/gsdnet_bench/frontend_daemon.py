"""The daemon's latency from the last frame of an utterance to the result that covers it, and its
resident memory with the text frontend's encoder loaded (issue 20 item 4: p99 <= 50 ms with 8
conversations).

Owns: a temporary board profile (boards/x86-dev.toml with its endpoints replaced by one Unix
socket in a temporary folder; everything else as the profile says: tract, its threads, queue,
batching and limits), starting `gsdnet serve` on a model whose text modality is a frontend
(models/gsdnet-iemocap6: all-MiniLM-L6-v2), and runs of N concurrent conversations, each its own
connection, sending per utterance what a sensor sends: the `Transcript` (tag 16), the audio
`Features` (values drawn from the model's normalisation mean / std) and `UtteranceEnd`, two
speakers alternating, one utterance every ~interval seconds (uniform jitter +-25 %, staggered
starts). One subscriber reads every `Result`. The runs (--runs, default dialogue, fast, fast,
dialogue) share one daemon, so the first run is the cold start: the daemon readies the encoder for
every batch shape (1, 2, 4, 8 rows x every seq bucket) before READY, and the report keeps the
daemon's own line saying how many shapes and how long (`frontend_warmup`).

Latency of utterance u = (monotonic time the first `Result` holding u with its final `avail`
arrived) - (time its last frame, the `UtteranceEnd`, was written), in one asyncio loop on the
client. It includes the encoder (tokenise + MiniLM), the assembly, the queue, GSDNet's inference
of the window and the socket both ways. Memory: VmRSS / VmHWM from /proc/PID/status idle after
READY and after each run. Transcripts are synthetic English sentences of 5-25 words (or the
`text` column of a CSV named with --transcripts, read at run time). Bounded: every run stops at
--duration or --max-utterances, the results are awaited at most --drain seconds; loopback only.
The table prints the p99 against the target; nothing is asserted.

    python -m gsdnet_bench.frontend_daemon [--json out.json] [--conversations 8] [--duration 60]
"""
from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import random
import re
import subprocess
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import gsdnet_client as g
from gsdnet_bench.daemon import _vm
from gsdnet_ref.paths import ROOT

TARGET_P99_MS = 50.0
DEFAULT_BINARY = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release" / "gsdnet"
DEFAULT_MODEL = ROOT / "models" / "gsdnet-iemocap6"

_SUBJECTS = ("I", "you", "we", "they", "my brother", "the manager", "your friend", "she", "he",
             "nobody", "everyone at work", "the doctor", "our neighbours", "the kids")
_VERBS = ("said", "thought", "told me", "really believe", "never wanted", "finally decided",
          "keep forgetting", "just found out", "was hoping", "could not understand", "promised")
_TAILS = ("that the flight was cancelled again", "we should move to another city next year",
          "about the letter that came this morning", "it would all work out in the end",
          "why you did not call me back last night", "the money is gone", "to go to the beach",
          "how tired I am of waiting", "that this is the best news in weeks", "what happened",
          "the car broke down on the way home", "to talk about it later", "you were right")
_OPENERS = ("well", "honestly", "oh", "look", "you know", "okay so", "wait", "yeah")


def synthetic_transcripts(n: int, rng: random.Random) -> list[str]:
    """n English sentences of 5-25 words built from a small grammar (no corpus text)."""
    out = []
    while len(out) < n:
        parts = [rng.choice(_OPENERS)] if rng.random() < 0.4 else []
        parts += [rng.choice(_SUBJECTS), rng.choice(_VERBS), rng.choice(_TAILS)]
        if rng.random() < 0.5:
            parts += ["and", rng.choice(_SUBJECTS), rng.choice(_VERBS), rng.choice(_TAILS)]
        words = " ".join(parts).split()
        if 5 <= len(words) <= 25:
            text = " ".join(words)
            out.append(text[0].upper() + text[1:] + rng.choice((".", "?", "!", ".")))
    return out


def csv_transcripts(path: Path, rng: random.Random, limit: int = 5000) -> list[str]:
    """Non-empty values of the `text` column of `path` (read at run time, never stored)."""
    with open(path, newline="", encoding="utf-8") as f:
        texts = [row["text"].strip() for row in csv.DictReader(f) if row.get("text", "").strip()]
    rng.shuffle(texts)
    if not texts:
        raise SystemExit(f"{path}: no `text` values")
    return texts[:limit]


def audio_moments(model: Path) -> tuple[list[float], list[float]]:
    """The model's audio normalisation mean and std (the scale of raw audio features)."""
    manifest = tomllib.loads((model / "manifest.toml").read_text())
    norm = manifest["normalisation"]
    return norm["audio_mean"], norm["audio_std"]


def frontend_missing(model: Path) -> str | None:
    """Why `model` cannot take transcripts here (None: it can)."""
    manifest_path = model / "manifest.toml"
    if not manifest_path.exists():
        return f"{manifest_path} not found"
    manifest = tomllib.loads(manifest_path.read_text())
    front = manifest.get("frontends", {}).get("text")
    if not front:
        return f"{model.name} has no [frontends.text]"
    folder = (model / front["dir"]).resolve()
    for name in ("encoder.onnx", "tokenizer.json"):
        if not (folder / name).exists():
            return f"{folder / name} not found (bash scripts/setup-frontends.sh)"
    return None


def profile(tmp: Path, sock: Path) -> Path:
    """boards/x86-dev.toml with its endpoints replaced by the Unix socket `sock`."""
    text = (ROOT / "boards" / "x86-dev.toml").read_text()
    text = re.sub(r"^tcp = .*$", "tcp = []", text, flags=re.M)
    text = re.sub(r"^unix = .*$", f'unix = ["{sock}"]', text, flags=re.M)
    path = tmp / "x86-dev.toml"
    path.write_text(text)
    return path


def cpu_seconds(pid: int) -> float:
    """utime + stime of process `pid` (all its threads), seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class RunSpec:
    name: str
    conversations: int
    interval_s: float
    duration_s: float
    max_utterances: int = 1000
    drain_s: float = 15.0


@dataclass
class Tally:
    """What the client saw: write times, first arrival per (key, avail), last avail per key."""
    sent: dict = field(default_factory=dict)  # (conv, u) -> monotonic s of the last frame written
    first: dict = field(default_factory=dict)  # (conv, u, avail) -> monotonic s of first result
    avail: dict = field(default_factory=dict)  # (conv, u) -> avail in the latest result
    notices: dict = field(default_factory=dict)  # reason -> count refused (sender notices)
    bad_frames: int = 0

    def on_result(self, msg: dict, at: float) -> None:
        conv = msg["conversation"]
        for u in msg["utterances"]:
            key = (conv, u["utterance"])
            if key in self.sent:
                self.first.setdefault(key + (u["avail"],), at)
                self.avail[key] = u["avail"]

    def latencies_ms(self) -> list[float]:
        return sorted((self.first[k + (self.avail[k],)] - t) * 1e3 for k, t in self.sent.items() if k in self.avail)

    def covered(self) -> bool:
        return all(k in self.avail for k in self.sent)


async def _reader(reader: asyncio.StreamReader, tally: Tally, answers: asyncio.Queue | None) -> None:
    dec = g.FrameDecoder()
    while data := await reader.read(65536):
        at = time.monotonic()
        for item in dec.feed(data):
            if isinstance(item, g.ProtocolError):
                tally.bad_frames += 1
                continue
            tag, msg = item
            if tag == g.RESULT:
                tally.on_result(msg, at)
            elif tag == g.NOTICE:
                tally.notices[msg["reason"]] = tally.notices.get(msg["reason"], 0) + msg["count"]
            elif answers is not None and tag in (g.STATUS, g.LIMITS):
                answers.put_nowait((tag, msg))


async def _ask(writer, answers: asyncio.Queue, body: bytes, want: int, timeout: float = 10.0) -> dict:
    writer.write(g.frame(body))
    await writer.drain()
    async with asyncio.timeout(timeout):
        while True:
            tag, msg = await answers.get()
            if tag == want:
                return msg


async def _conversation(sock: Path, spec: RunSpec, index: int, texts: list[str], audio, tally: Tally,
                        rng: random.Random, until: float) -> None:
    """One sender: its own connection (subscribed to notices of its refused input), its
    utterances paced by `spec`, then `ConversationEnd` and `LimitsRequest` (every notice in)."""
    reader, writer = await asyncio.open_unix_connection(str(sock))
    answers: asyncio.Queue = asyncio.Queue()
    read = asyncio.create_task(_reader(reader, tally, answers))
    conv = f"{spec.name}-{index}"
    writer.write(g.frame(g.subscribe_notices()))
    await asyncio.sleep(rng.uniform(0, spec.interval_s))  # staggered starts
    mean, std = audio
    for u in range(spec.max_utterances):
        if time.monotonic() >= until:
            break
        speaker, text = u % 2, texts[rng.randrange(len(texts))]
        values = [rng.gauss(m, s) for m, s in zip(mean, std)]
        data = (g.frame(g.transcript(conv, u, speaker, 0, text.encode("utf-8")[: g.MAX_TRANSCRIPT]
                                     .decode("utf-8", "ignore")))
                + g.frame(g.features(conv, u, speaker, "audio", 0, values))
                + g.frame(g.utterance_end(conv, u, speaker, 0)))
        writer.write(data)  # the socket is written now (empty buffer): the clock starts here
        tally.sent[(conv, u)] = time.monotonic()
        await writer.drain()
        await asyncio.sleep(spec.interval_s * rng.uniform(0.75, 1.25))
    writer.write(g.frame(g.conversation_end(conv)))
    await _ask(writer, answers, g.limits_request(), g.LIMITS, timeout=spec.drain_s)
    writer.close()
    read.cancel()


async def _subscriber(sock: Path, tally: Tally):
    """A connection subscribed to results, ready once the daemon answered a request after it."""
    reader, writer = await asyncio.open_unix_connection(str(sock))
    answers: asyncio.Queue = asyncio.Queue()
    task = asyncio.create_task(_reader(reader, tally, answers))
    writer.write(g.frame(g.subscribe()))
    await _ask(writer, answers, g.status_request(), g.STATUS)
    return writer, answers, task


async def _run(sock: Path, spec: RunSpec, texts: list[str], audio, seed: int) -> tuple[Tally, dict]:
    tally = Tally()
    writer, answers, task = await _subscriber(sock, tally)
    until = time.monotonic() + spec.duration_s
    await asyncio.gather(*(_conversation(sock, spec, i, texts, audio, tally, random.Random(seed * 1000 + i), until)
                           for i in range(spec.conversations)))
    deadline = time.monotonic() + spec.drain_s
    while not tally.covered() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    status = await _ask(writer, answers, g.status_request(), g.STATUS)
    writer.close()
    task.cancel()
    return tally, status


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of an ascending list; None when empty."""
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * q // 100))
    return sorted_values[int(rank) - 1]


def summarise(spec: RunSpec, tally: Tally, status: dict, wall_s: float, cpu_s: float) -> dict:
    lat = [round(v, 3) for v in tally.latencies_ms()]
    p99 = percentile(lat, 99)
    return dict(
        name=spec.name, conversations=spec.conversations, interval_s=spec.interval_s, duration_s=spec.duration_s,
        wall_s=round(wall_s, 2), utterances_sent=len(tally.sent), utterances_covered=len(tally.avail),
        text_and_audio=sum(1 for a in tally.avail.values() if a == 3),
        utterances_per_s=round(len(tally.sent) / spec.duration_s, 2) if spec.duration_s else None,
        latency_ms=dict(p50=percentile(lat, 50), p90=percentile(lat, 90), p99=p99, max=lat[-1] if lat else None,
                        mean=round(sum(lat) / len(lat), 3) if lat else None),
        target_p99_ms=TARGET_P99_MS, p99_ratio=p99 / TARGET_P99_MS if p99 is not None else None,
        refused=dict(tally.notices), bad_frames=tally.bad_frames, daemon_cpu_s=round(cpu_s, 2),
        status_since_start={k: status.get(k) for k in ("engine", "windows_run", "windows_superseded", "windows_dropped",
                                           "inference_errors", "results_published", "rejected")})


# Warnings, and the frontend's one warm-up line (daemon::frontend, info).
DAEMON_LOG = "warn,gsdnet_edge::daemon::frontend=info"


class Daemon:
    """`gsdnet serve` on the temporary profile; READY when its socket exists. Its log goes to a
    file in `tmp` (a pipe nobody reads could fill and stall it)."""

    def __init__(self, binary: Path, model: Path, tmp: Path, start_timeout: float = 120.0):
        self.sock = tmp / "gsdnet.sock"
        self.log = tmp / "daemon.log"
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen([str(binary), "serve", "--board", str(profile(tmp, self.sock)),
                                          "--models", str(model)], cwd=ROOT, stdout=subprocess.DEVNULL,
                                         stderr=log, env=dict(os.environ, RUST_LOG=DAEMON_LOG))
        began = time.monotonic()
        while not self.sock.exists():
            if self.proc.poll() is not None or time.monotonic() - began > start_timeout:
                self.stop()
                raise SystemExit(f"gsdnet serve did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.05)
        self.ready_s = time.monotonic() - began

    def warmup_line(self) -> str | None:
        """The daemon's line on the text frontend's warm-up (None: this daemon logs none)."""
        lines = [ln for ln in self.log.read_text(errors="replace").splitlines() if "text frontend on" in ln]
        return lines[0].split("text frontend on", 1)[1].strip() if lines else None

    def memory(self) -> dict:
        vm = _vm(self.proc.pid)
        return dict(rss_kib=vm["VmRSS"], hwm_kib=vm["VmHWM"])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def measure(binary: Path, model: Path, specs: list[RunSpec], texts: list[str], seed: int = 0,
            settle_s: float = 1.0) -> dict:
    """Starts the daemon, reads its idle memory, runs every spec in turn (memory after each) and
    returns the report (JSON-ready)."""
    audio = audio_moments(model)
    report = dict(model=model.name, board="boards/x86-dev.toml (Unix socket in a temporary folder)",
                  binary=str(binary), cpus=os.cpu_count(), load_before=os.getloadavg(), runs=[])
    with tempfile.TemporaryDirectory() as d:
        daemon = Daemon(binary, model, Path(d))
        try:
            time.sleep(settle_s)
            report["ready_s"] = round(daemon.ready_s, 2)
            report["memory_idle"] = daemon.memory()
            report["frontend_warmup"] = daemon.warmup_line()
            for spec in specs:
                cpu0, t0 = cpu_seconds(daemon.proc.pid), time.monotonic()
                tally, status = asyncio.run(_run(daemon.sock, spec, texts, audio, seed))
                wall, cpu = time.monotonic() - t0, cpu_seconds(daemon.proc.pid) - cpu0
                report["runs"].append(dict(summarise(spec, tally, status, wall, cpu), memory_after=daemon.memory()))
        finally:
            daemon.stop()
    report["load_after"] = os.getloadavg()
    return report


def table(report: dict) -> str:
    mib = lambda kib: f"{kib / 1024:.1f} MiB"  # noqa: E731
    ms = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
    lines = [f"model {report['model']}, {report['board']}, {report['cpus']} CPUs, load average before "
             + " ".join(f"{x:.2f}" for x in report["load_before"]) + ", after "
             + " ".join(f"{x:.2f}" for x in report["load_after"]),
             f"daemon ready in {report['ready_s']} s; idle: VmRSS {mib(report['memory_idle']['rss_kib'])}, "
             f"VmHWM {mib(report['memory_idle']['hwm_kib'])}; text frontend warm-up: "
             f"{report.get('frontend_warmup') or 'not logged'}",
             "| run | conv | utt/s (all, sent) | sent | covered | T+A | p50 ms | p90 ms | p99 ms | max ms | p99 / 50 ms "
             "| daemon CPU s | refused | VmRSS / VmHWM after |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["runs"]:
        lat, mem = r["latency_ms"], r["memory_after"]
        ratio = "-" if r["p99_ratio"] is None else f"{r['p99_ratio']:.2f} ({'met' if r['p99_ratio'] <= 1 else 'MISSED'})"
        lines.append(f"| {r['name']} (every {r['interval_s']} s) | {r['conversations']} | {r['utterances_per_s']} "
                     f"| {r['utterances_sent']} | {r['utterances_covered']} | {r['text_and_audio']} | {ms(lat['p50'])} "
                     f"| {ms(lat['p90'])} | {ms(lat['p99'])} | {ms(lat['max'])} | {ratio} | {r['daemon_cpu_s']} "
                     f"| {r['refused'] or 0} | {mib(mem['rss_kib'])} / {mib(mem['hwm_kib'])} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gsdnet", type=Path, default=DEFAULT_BINARY)
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="a model whose text is a frontend")
    p.add_argument("--conversations", type=int, default=8)
    p.add_argument("--interval", type=float, default=2.0, help="seconds between a conversation's utterances")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of the dialogue-pace run")
    p.add_argument("--fast-interval", type=float, default=0.25, help="the headroom run's interval")
    p.add_argument("--fast-duration", type=float, default=20.0, help="seconds of a headroom run")
    p.add_argument("--runs", default="dialogue,fast,fast,dialogue",
                   help="the runs in order, on one daemon (the first is the cold start after READY)")
    p.add_argument("--max-utterances", type=int, default=1000, help="per conversation and run")
    p.add_argument("--drain", type=float, default=15.0, help="longest wait for the last results")
    p.add_argument("--transcripts", type=Path, help="CSV with a `text` column read at run time "
                   "(default: synthetic sentences)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="write the report here")
    a = p.parse_args()
    model = a.model.resolve()
    if not a.gsdnet.exists():
        raise SystemExit(f"{a.gsdnet} not found (cargo build --release)")
    if why := frontend_missing(model):
        raise SystemExit(why)
    rng = random.Random(a.seed)
    texts = csv_transcripts(a.transcripts, rng) if a.transcripts else synthetic_transcripts(500, rng)
    paces = {"dialogue": (a.interval, a.duration), "fast": (a.fast_interval, a.fast_duration)}
    names = [n.strip() for n in a.runs.split(",") if n.strip()]
    if not names or any(n not in paces for n in names):
        raise SystemExit(f"--runs: a comma list of {', '.join(paces)}")
    specs = [RunSpec(f"{n}-{i + 1}", a.conversations, *paces[n], a.max_utterances, a.drain)
             for i, n in enumerate(names)]
    report = measure(a.gsdnet, model, specs, texts, a.seed)
    report["transcripts"] = "csv (run time)" if a.transcripts else "synthetic"
    print(table(report))
    if a.json:
        a.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
