"""Rust pipeline vs the Python references, one window, same inputs, same run -> docs/results/bench-report.md.

Owns: timing one window (first N utterances of a split in order, the seeded mask of
gsdnet_ref.masks at --rate with conv id "bench", sampler noise stream (seed, 0, "bench", 0)) of
  * the PyTorch eager reference (python/gsdnet_torch, models/<m>/model.pt: numpy graph and
    eigendecomposition, torch parts and sampler, torch noise),
  * the onnxruntime Python reference (gsdnet_ref.pipeline.run_window, numpy + ORT),
  * the Rust `gsdnet-bench --json` (`gsdnet bench` with the counting allocator, so allocations
    are counted; every compiled backend) on the same split folder,
all single-threaded; FLOPs of one window counted from the ONNX graphs (MatMul/Gemm/Conv after
onnx shape inference) and the achieved GFLOP/s; the result dict that gsdnet_bench.report renders
as the markdown report with Rust/reference ratios.

    python3 -m gsdnet_bench.reference [--quick] [--iters N] [--out docs/results/bench-report.md]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Single-threaded BLAS for numpy (graph eigendecomposition) and torch: must be set before numpy is
# imported; a multi-threaded OpenBLAS on a loaded 2-core machine made a 64x64 eigh take ~15 ms.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import torch  # noqa: E402
from gsdnet_ref import data as gdata  # noqa: E402
from gsdnet_ref import masks as gmasks  # noqa: E402
from gsdnet_ref import pipeline as gpipe  # noqa: E402
from gsdnet_ref.paths import ROOT, SHARED_DATA  # noqa: E402
from gsdnet_ref.sampler import HEUN, stream_key  # noqa: E402
from gsdnet_torch import common  # noqa: E402
from gsdnet_torch.heun import sample_heun_torch  # noqa: E402
from gsdnet_torch.model import spectrum  # noqa: E402

from gsdnet_bench.report import report  # noqa: E402

PARTS = ("encoders", "s_theta", "s_phi", "recon", "fusion")


# ---------------------------------------------------------------------------------------- inputs
def bench_window(split: Path, n: int) -> gdata.Conversation:
    """The first n utterances of the split in order, as one conversation (same as the Rust bench)."""
    convs = gdata.load_split(split)
    cat = lambda f: np.concatenate([f(c) for c in convs])  # noqa: E731
    if sum(c.n for c in convs) < n:
        raise SystemExit(f"{split} holds fewer than {n} utterances")
    return gdata.Conversation(
        conv_id="bench", utt_ids=cat(lambda c: np.asarray(c.utt_ids))[:n].tolist(),
        feats={m: cat(lambda c, m=m: c.feats[m])[:n] for m in convs[0].feats},
        label_cont=cat(lambda c: c.label_cont)[:n], label=cat(lambda c: c.label)[:n],
        speaker=cat(lambda c: c.speaker)[:n])


# ------------------------------------------------------------------------------------- pipelines
def ort_runner(model_dir: Path, conv, avail_n, steps: int, seed: int):
    model = gpipe.OnnxModel(model_dir, threads=1)
    model.man.sde = dataclasses.replace(model.man.sde, steps=steps)
    key = stream_key(seed, 0, "bench", 0)
    return lambda: gpipe.run_window(model, conv.feats, avail_n, conv.speaker, "gsdnet",
                                    noise_key=key)


def torch_runner(model_dir: Path, conv, avail_n, steps: int, seed: int, sampler: str,
                 width: int | None = None):
    """`width` None: padded to the checkpoint's W (as trained); else the window is built at
    `width` (>= N; the positional embedding is sliced to it)."""
    model, a, stats = common.load_checkpoint(model_dir / "model.pt")
    w, n = (a["width"] if width is None else width), conv.n
    avail = torch.zeros((1, w, 3))
    avail[0, :n] = torch.from_numpy(avail_n.astype(np.float32))
    gen = torch.Generator()

    @torch.no_grad()
    def run():
        gen.manual_seed(seed)
        vb = common.make_batch([conv], stats, w, a["k"], a["window_same"], a["window_other"])
        idx = torch.arange(1)
        h, cond = common.encode_inputs(model, vb, idx, avail, "gsdnet")
        lam_obs = spectrum(cond, vb.u, vb.node_mask)
        complete = sample_heun_torch if sampler == HEUN else common.complete
        x0, lam0 = complete(model, h, cond, avail, vb.node_mask, vb.u, lam_obs, steps, a["eps"],
                            gen)
        recon = model.recon(x0)
        return recon, model.fuse(x0, avail, common.fusion_adj(vb.adj, vb.u, lam0), vb.node_mask)
    return run


def timed(fn, iters: int, warmup: int, budget_s: float) -> dict:
    for _ in range(warmup):
        fn()
    ms, began = [], time.perf_counter()
    cap, floor = (iters, iters) if iters > 0 else (100_000, 10)
    while len(ms) < cap and (len(ms) < floor or time.perf_counter() - began < budget_s):
        t0 = time.perf_counter()
        fn()
        ms.append((time.perf_counter() - t0) * 1e3)
    v = np.sort(np.asarray(ms))
    rank = lambda p: float(v[min(max(int(np.ceil(p * len(v))), 1) - 1, len(v) - 1)])  # noqa: E731
    return dict(p50_ms=rank(0.5), p99_ms=rank(0.99), mean_ms=float(v.mean()), iters=len(v))


# ----------------------------------------------------------------------------------------- FLOPs
def _shapes(model: onnx.ModelProto) -> dict:
    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    out = {t.name: list(t.dims) for t in g.initializer}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        dims = [d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim]
        out[vi.name] = dims
    for node in g.node:
        if node.op_type == "Constant":
            for at in node.attribute:
                if at.name == "value":
                    out[node.output[0]] = list(at.t.dims)
    return out


def part_flops(path: Path, window: int = 64) -> int:
    """2*M*N*K per MatMul/Gemm (batch dims broadcast), 2*out*Cin/g*kernel per Conv; symbolic
    axes fixed first (batch 1, window `window`)."""
    model = onnx.load(path)
    for vi in list(model.graph.input) + list(model.graph.output):
        for d in vi.type.tensor_type.shape.dim:
            if d.HasField("dim_param"):
                d.dim_value = {"batch": 1, "window": window}.get(d.dim_param, 1)
    shapes, total = _shapes(model), 0
    for node in model.graph.node:
        ins = [shapes.get(i) for i in node.input]
        outs = [shapes.get(o) for o in node.output]
        if node.op_type in ("MatMul", "Gemm"):
            a, y = ins[0], outs[0]
            if a is None or y is None or None in a or None in y:
                raise SystemExit(f"{path.name}: unknown shape at {node.name or node.op_type}")
            trans_a = any(at.name == "transA" and at.i for at in node.attribute)
            k = a[-2] if trans_a else a[-1]
            total += 2 * int(np.prod(y)) * k
        elif node.op_type == "Conv":
            w, y = ins[1], outs[0]   # w = [Cout, Cin/group, *kernel]
            total += 2 * int(np.prod(y)) * int(np.prod(w[1:]))
    return total


def window_flops(model_dir: Path, calls: int, window: int = 64) -> tuple[int, dict]:
    """FLOPs of a window run at `window` whose sampler makes `calls` calls of each score
    network."""
    per = {p: part_flops(model_dir / f"{p}.onnx", window) for p in PARTS}
    return per["encoders"] + calls * (per["s_theta"] + per["s_phi"]) + per["recon"] + \
        per["fusion"], per


def nominal_peak_gflops() -> tuple[float | None, str]:
    """One core, f32: 2 FMA pipes x lanes x 2 FLOP per cycle at the reported clock."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None, "unknown (no /proc/cpuinfo)"
    flags = next((ln for ln in info.splitlines() if ln.startswith("flags")), "")
    mhz = next((float(ln.split(":")[1]) for ln in info.splitlines() if ln.startswith("cpu MHz")), None)
    per_cycle = 64 if " avx512f" in flags else 32 if " avx2" in flags and " fma" in flags else 8
    if mhz is None:
        return None, f"{per_cycle} FLOP/cycle, clock unknown"
    return per_cycle * mhz / 1e3, f"{per_cycle} f32 FLOP/cycle x {mhz:.0f} MHz (reported clock)"


# ------------------------------------------------------------------------------------------ Rust
def shown(path) -> str:
    """An absolute path as the report prints it: relative to the repository root (so
    ../shared/data/... for the data), never a particular machine's folders."""
    p = str(path)
    return os.path.relpath(p, ROOT) if os.path.isabs(p) else p


def rust_bench(binary: Path, model_dir: Path, split: Path, sizes, steps, a,
               batch: list | None = None) -> dict:
    if not binary.exists():
        raise SystemExit(f"{binary} is missing: run `cargo build --release` first "
                         "(it builds gsdnet and gsdnet-bench)")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rust.json"
        cmd = [str(binary), "bench", "--model", str(model_dir), "--data", str(split),
               "--sizes", ",".join(map(str, sizes)), "--steps", ",".join(map(str, steps)),
               "--threads", "1", "--rate", str(a.rate), "--seed", str(a.seed),
               "--warmup", str(a.warmup), "--iters", str(a.iters),
               "--budget-ms", str(int(a.budget * 1e3)), "--padded"]
        if batch:
            cmd += ["--batch", ",".join(map(str, batch))]
        cmd += ["--json", str(out)]
        print("+", " ".join(cmd), file=sys.stderr)
        subprocess.run(cmd, check=True, stdout=sys.stderr)
        doc = json.loads(out.read_text())
    if not doc.get("allocations_counted"):
        raise SystemExit(f"{binary} did not count allocations: pass the gsdnet-bench binary")
    # without "bench" and --json; paths as seen from the repository root, no machine's own
    doc["command"] = " ".join(["gsdnet-bench"] + [shown(x) for x in cmd[2:-2]])
    return doc


def best_rust(docs: list) -> dict:
    """Per (backend, layout), the row of the round with the lowest whole-window p50; the
    bucketed/padded speedup from those; per (backend, steps, B) the batch row of the round with
    the lowest ms/window, its ratio to B = 1 recomputed from the kept rows."""
    best, bbest = {}, {}
    for d in docs:
        for r in d["rows"]:
            key = (r["backend"], r.get("layout", "bucketed"))
            if key not in best or r["total"]["p50_ms"] < best[key]["total"]["p50_ms"]:
                best[key] = r
        for r in d.get("batch_rows") or []:
            key = (r["backend"], r["steps"], r["batch"])
            if key not in bbest or r["per_window_p50_ms"] < bbest[key]["per_window_p50_ms"]:
                bbest[key] = r
    speedups = []
    for (e, lay), r in best.items():
        if lay == "bucketed" and (e, "padded") in best:
            p = best[(e, "padded")]
            speedups.append(dict(backend=e, window=r["window"], steps=r["steps"], bucket=r["bucket"],
                                 bucketed_p50_ms=r["total"]["p50_ms"],
                                 padded_p50_ms=p["total"]["p50_ms"],
                                 speedup=p["total"]["p50_ms"] / r["total"]["p50_ms"]))
    batch_rows = [dict(r) for r in bbest.values()]
    for r in batch_rows:
        one = bbest.get((r["backend"], r["steps"], 1))
        r["speedup_vs_1"] = one["per_window_p50_ms"] / r["per_window_p50_ms"] if one else None
    return dict(docs[0], rows=list(best.values()), speedups=speedups, batch_rows=batch_rows,
                peak_rss_kib=max(d.get("peak_rss_kib") or 0 for d in docs))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=ROOT / "models/gsdnet-mosi")
    p.add_argument("--data", type=Path, default=SHARED_DATA / "cmu-mosi" / "val",
                   help="split folder; the Rust bench reads the same folder")
    p.add_argument("--gsdnet", type=Path, default=ROOT / "target/release/gsdnet",
                   help="production binary (the daemon's resident memory)")
    p.add_argument("--gsdnet-bench", type=Path, default=None,
                   help="binary with the counting allocator for the Rust rows "
                        "[default: gsdnet-bench beside --gsdnet]")
    p.add_argument("--sizes", type=int, nargs="+", default=[16, 32, 64])
    p.add_argument("--steps", type=int, nargs="+", default=None,
                   help="default: the manifest's steps and 10")
    p.add_argument("--quick", action="store_true", help="window 32 at the manifest's steps only")
    p.add_argument("--iters", type=int, default=0, help="timed windows (0 = --budget seconds)")
    p.add_argument("--budget", type=float, default=0.5, help="seconds per pipeline and round")
    p.add_argument("--rounds", type=int, default=3,
                   help="back-to-back rounds per configuration; the lowest p50 of each is kept")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--rate", type=float, default=0.3)
    p.add_argument("--batch", type=int, nargs="*", default=[1, 8],
                   help="batch sizes of the Rust batch mode (run with window 32, default steps)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=ROOT / "docs/results/bench-report.md")
    p.add_argument("--json", type=Path, help="also write every number as JSON here")
    a = p.parse_args(argv)
    if a.rounds < 1:
        p.error("--rounds must be at least 1")
    if a.gsdnet_bench is None:
        a.gsdnet_bench = a.gsdnet.with_name("gsdnet-bench")
    return a


def measure_config(a, man, n: int, st: int, buckets: tuple, calls) -> tuple[dict, dict]:
    """Window N at `st` steps: Rust, ORT Python and torch back to back, --rounds times; each
    pipeline keeps its round with the lowest p50 (interference from other processes only adds
    time), so load that drifts over the run moves the ratios as little as it can. Returns the
    configuration's row and the best Rust document."""
    conv = bench_window(a.data, n)
    avail_n = gmasks.mask_for_rate(a.seed, a.rate, "bench", n)
    bucket = next((b for b in buckets if b >= n), buckets[-1])
    c = dict(n=n, steps=st, bucket=bucket, flops=window_flops(a.model, calls(st), bucket)[0],
             rounds=a.rounds)
    rounds = {"rust": [], "ort": [], "torch_padded": [], "torch_bucket": []}
    # The batch mode rides along with window 32 at the default steps (its windows are
    # whole conversations, not the first N utterances).
    batch = a.batch if (n == 32 and st == man.sde.steps and a.batch) else None
    for _ in range(a.rounds):
        rounds["rust"].append(rust_bench(a.gsdnet_bench, a.model, a.data, [n], [st], a, batch))
        rounds["ort"].append(timed(ort_runner(a.model, conv, avail_n, st, a.seed), a.iters,
                                   a.warmup, a.budget))
        rounds["torch_padded"].append(timed(torch_runner(a.model, conv, avail_n, st, a.seed,
                                                         man.sde.sampler),
                                            a.iters, a.warmup, a.budget))
        if bucket != buckets[-1]:
            rounds["torch_bucket"].append(timed(
                torch_runner(a.model, conv, avail_n, st, a.seed, man.sde.sampler, bucket),
                a.iters, a.warmup, a.budget))
    c["ort"] = min(rounds["ort"], key=lambda r: r["p50_ms"])
    c["torch_padded"] = min(rounds["torch_padded"], key=lambda r: r["p50_ms"])
    c["torch_bucket"] = (min(rounds["torch_bucket"], key=lambda r: r["p50_ms"])
                         if rounds["torch_bucket"] else c["torch_padded"])
    # The torch reference the ratios use: the faster of padded-to-W and exact bucket.
    fast_bucket = c["torch_bucket"]["p50_ms"] < c["torch_padded"]["p50_ms"]
    c["torch"] = c["torch_bucket"] if fast_bucket else c["torch_padded"]
    c["torch_width"] = bucket if fast_bucket else buckets[-1]
    print(f"N={n} steps={st}: ort-py {c['ort']['p50_ms']:.2f} ms, torch padded "
          f"{c['torch_padded']['p50_ms']:.2f} ms, torch at {bucket} "
          f"{c['torch_bucket']['p50_ms']:.2f} ms", file=sys.stderr)
    return c, best_rust(rounds["rust"])


def main(argv=None):
    a = parse_args(argv)
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    man = gpipe.load_manifest(a.model)
    grid = sorted({man.sde.steps, 10}) if a.steps is None else a.steps
    sizes, steps = ([32], [man.sde.steps]) if a.quick else (a.sizes, grid)
    res = dict(date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), quick=a.quick,
               load_before=", ".join(f"{x:.2f}" for x in os.getloadavg()),
               cpu=platform.processor() or platform.machine(), model=man.raw["model"]["name"],
               split=shown(a.data), rate=a.rate, seed=a.seed, default_steps=man.sde.steps, rounds=a.rounds,
               sampler=man.sde.sampler)
    for ln in Path("/proc/cpuinfo").read_text().splitlines():
        if ln.startswith("model name"):
            res["cpu"] = ln.split(":", 1)[1].strip()
            break
    res["peak_gflops"], res["peak_note"] = nominal_peak_gflops()
    _, res["part_flops"] = window_flops(a.model, 1, 32)
    calls = lambda st: 2 * st if man.sde.sampler == HEUN else st  # noqa: E731
    res["configs"], rust_docs = [], []
    buckets = tuple(man.buckets) or (man.width if hasattr(man, "width") else 64,)
    res["buckets"] = list(buckets)
    for n in sizes:
        for st in steps:
            c, rust_doc = measure_config(a, man, n, st, buckets, calls)
            rust_docs.append(rust_doc)
            res["configs"].append(c)
    res["rust"] = dict(rows=[r for d in rust_docs for r in d["rows"]],
                       speedups=[x for d in rust_docs for x in d.get("speedups", [])],
                       batch_rows=[x for d in rust_docs for x in d.get("batch_rows", [])],
                       peak_rss_kib=max(d.get("peak_rss_kib") or 0 for d in rust_docs),
                       command=rust_docs[0]["command"].replace(f"--sizes {sizes[0]} --steps {steps[0]}",
                                                               "--sizes N --steps S"))
    if not a.quick:
        from gsdnet_bench.daemon import measure
        res["daemon"] = measure(a.gsdnet, a.model.resolve(), ROOT / "data/mosi-val.gsdrec",
                                a.rate)
    res["load_after"] = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    a.out.write_text(report(res))
    if a.json:
        a.json.write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
