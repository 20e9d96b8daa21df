"""The committed models' ONNX parts have the symbolic axes "batch" (axis 0 of every input and
output) and "window" (every W axis), as their manifests declare, and running them at a smaller
window bucket or with several windows in one batch changes no valid number: on synthetic
windows of n valid rows (padded rows zero, node_mask 0 there) the valid rows at [1, N] for the
buckets N < W equal those at [1, W] (rtol = atol = 1e-5), and a batch of B = 3 different
windows equals three B = 1 runs (ATOL scaled by the output's largest magnitude). Needs
onnxruntime (and onnx for the declared-axes test) only, no data.

    python3 tests/python/test_dynamic_axes.py [--old DIR]
prints the max abs differences per model and part; `--old DIR` (DIR/<model>/<part>.onnx, e.g.
the fixed-shape parts before the re-export) adds new-vs-old at [1, W].
"""
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
MODELS = ("gsdnet-mosi", "gsdnet-iemocap6", "gsdnet-iemocap4")
PARTS = ("encoders", "s_theta", "s_phi", "recon", "fusion")
RTOL = ATOL = 1e-5

import onnxruntime as ort  # noqa: E402


def manifest(model: str) -> dict:
    return tomllib.loads((ROOT / "models" / model / "manifest.toml").read_text())


def session(path) -> "ort.InferenceSession":
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def window_inputs(spec: list, ns: list, width: int, seed: int) -> dict:
    """Inputs of a part (manifest `inputs`) for len(ns) windows of ns[b] valid rows padded to
    `width`: values on the valid rows only (zero elsewhere), availability 0/1 with at least one
    modality per row, symmetric adjacencies on the valid block, node_mask 1 on the valid rows.
    Window b's draws depend on (seed, b, its n) only, not on `width`."""
    feed = {x["name"]: np.zeros([len(ns) if s == "batch" else width if s == "window" else s
                                 for s in x["shape"]], np.float32) for x in spec}
    for b, n in enumerate(ns):
        rs = np.random.default_rng([seed, b, n])
        for x in spec:
            name, shape = x["name"], x["shape"]
            full = [n if s == "window" else s for s in shape[1:]]
            if name == "t":
                feed[name][b] = rs.uniform(0.02, 1.0)
                continue
            if name == "node_mask":
                v = np.ones(full, np.float32)
            elif name == "avail":
                v = (rs.uniform(size=full) < 0.6).astype(np.float32)
                v[np.arange(n), rs.integers(0, full[-1], n)] = 1.0
            elif name in ("adj_t", "adj"):
                v = rs.uniform(0, 0.5, full).astype(np.float32)
                v = v + np.swapaxes(v, -1, -2)
            else:
                v = rs.normal(size=full).astype(np.float32)
            feed[name][b][tuple(slice(0, f) for f in full)] = v
    return feed


def valid(out: np.ndarray, shape: list, n: int) -> np.ndarray:
    """`out` (one window, batch axis dropped) cut to its n valid rows on every window axis."""
    return out[tuple(slice(0, n) if s == "window" else slice(None) for s in shape[1:])]


def tol(ref: np.ndarray) -> float:
    """ATOL on the scale of the output: a batch of 3 runs the matrix products with other
    kernel blocking, so an element that cancels to ~0.5 out of terms of ~500 (IEMOCAP fusion
    logits on these inputs) moves by f32 rounding of those terms."""
    return ATOL * max(1.0, float(np.max(np.abs(ref)))) if ref.size else ATOL


def max_diff(a, b):
    return float(np.max(np.abs(a - b))) if a.size else 0.0


def check_part(model: str, part: str, man: dict, sess) -> dict:
    """Max abs diffs of (b) buckets vs [1, W] and (c) batch 3 vs three batch-1 runs; asserts
    both within RTOL and ATOL times the output's scale (`tol`)."""
    spec, width = man["parts"][part], man["dims"]["window"]
    buckets = man["dims"]["buckets"]
    outs = spec["outputs"]
    res = {"bucket": 0.0, "batch": 0.0, "batch_rel": 0.0}
    for bucket in buckets:
        ns = sorted({1, max(1, bucket // 2 + 1), bucket})
        for n in ns:
            ref = sess.run(None, window_inputs(spec["inputs"], [n], width, 1))
            got = sess.run(None, window_inputs(spec["inputs"], [n], bucket, 1))
            for o, r, g in zip(outs, ref, got):
                r, g = valid(r[0], o["shape"], n), valid(g[0], o["shape"], n)
                np.testing.assert_allclose(g, r, rtol=RTOL, atol=tol(r),
                                           err_msg=f"{model} {part} {o['name']} N={bucket} n={n}")
                res["bucket"] = max(res["bucket"], max_diff(g, r))
        ns = [max(1, bucket // 3), bucket, max(1, bucket - 3)]
        batch = sess.run(None, window_inputs(spec["inputs"], ns, bucket, 2))
        for b, n in enumerate(ns):
            one = window_inputs(spec["inputs"], ns, bucket, 2)
            one = {k: v[b:b + 1] for k, v in one.items()}
            single = sess.run(None, one)
            for o, bo, so in zip(outs, batch, single):
                g, r = valid(bo[b], o["shape"], n), valid(so[0], o["shape"], n)
                np.testing.assert_allclose(g, r, rtol=RTOL, atol=tol(r),
                                           err_msg=f"{model} {part} {o['name']} B=3 b={b}")
                res["batch"] = max(res["batch"], max_diff(g, r))
                res["batch_rel"] = max(res["batch_rel"], max_diff(g, r) / (tol(r) / ATOL))
    return res


def test_buckets_end_at_the_window():
    for model in MODELS:
        dims = manifest(model)["dims"]
        assert dims["buckets"] == [8, 16, 32, 64] and dims["window"] == 64, model


@pytest.mark.parametrize("model", MODELS)
def test_parts_declare_and_carry_the_symbolic_axes(model):
    onnx = pytest.importorskip("onnx")
    man = manifest(model)
    for part in PARTS:
        spec = man["parts"][part]
        m = onnx.load(str(ROOT / "models" / model / spec["file"]))
        for key, values in (("inputs", m.graph.input), ("outputs", m.graph.output)):
            got = [(v.name, [d.dim_param if d.HasField("dim_param") else d.dim_value
                             for d in v.type.tensor_type.shape.dim]) for v in values]
            assert got == [(x["name"], x["shape"]) for x in spec[key]], f"{model} {part} {key}"
            for _, shape in got:
                assert shape[0] == "batch" and all(isinstance(s, int) or s in ("batch", "window")
                                                   for s in shape), f"{model} {part} {shape}"


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("part", PARTS)
def test_buckets_and_batches_keep_the_valid_rows(model, part):
    man = manifest(model)
    check_part(model, part, man, session(ROOT / "models" / model / man["parts"][part]["file"]))


def main(argv):
    old = Path(argv[argv.index("--old") + 1]) if "--old" in argv else None
    for model in MODELS:
        man = manifest(model)
        width = man["dims"]["window"]
        for part in PARTS:
            spec = man["parts"][part]
            sess = session(ROOT / "models" / model / spec["file"])
            res = check_part(model, part, man, sess)
            line = f"{model:16} {part:9} (b) buckets {res['bucket']:.3g}" \
                f"  (c) batch {res['batch']:.3g}" \
                f" ({res['batch_rel']:.2g} of the output scale)"
            if old is not None:
                osess = session(old / model / spec["file"])
                d = 0.0
                for seed in range(3):
                    for n in (1, 7, 40, width):
                        feed = window_inputs(spec["inputs"], [n], width, 10 + seed)
                        # padded rows non-zero too: the old part saw [1, W] in full
                        rs = np.random.default_rng(seed)
                        for k in feed:
                            if k not in ("node_mask", "avail", "t"):
                                feed[k] = feed[k] + (feed[k] == 0) * rs.normal(
                                    size=feed[k].shape).astype(np.float32)
                        for a, b in zip(sess.run(None, feed), osess.run(None, feed)):
                            d = max(d, max_diff(a, b))
                line += f"  (a) vs old at [1, {width}] {d:.3g}"
            print(line)


if __name__ == "__main__":
    main(sys.argv[1:])
