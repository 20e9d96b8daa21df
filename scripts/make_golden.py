"""Writes the golden cases tests/golden/<case>/ from the ONNX parts (docs/DESIGN.md format).

Each case runs gsdnet_ref.pipeline.run_window on a val conversation, stores every component's
inputs and outputs as raw float32 plus case.toml with shapes and named tolerances, and checks
the PyTorch parts (models/<name>/model.pt) against onnxruntime, printing the max errors.
Every window axis (W) is cropped to the case's N valid nodes; case.toml records the W-padded
`full_shape` that readers zero-fill back to (W_AXES below says which axes and why it is exact).
    python3 scripts/make_golden.py [MODEL_DIR] [OUT_DIR]
"""
from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gsdnet_ref.tomlw import write_toml  # noqa: E402
from gsdnet_ref import data as gdata  # noqa: E402
from gsdnet_ref import masks as gmasks  # noqa: E402
from gsdnet_ref.pipeline import OnnxModel, run_window  # noqa: E402
from gsdnet_ref.sampler import draw_noise, stream_key  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
VAL = ROOT.parent / "shared" / "data" / "cmu-mosi" / "val"
TOL_EXACT = {"atol": 1e-6, "rtol": 1e-6}
TOL_PART = {"atol": 1e-4, "rtol": 1e-4}
TOL_SAMPLER = {"atol": 2e-3, "rtol": 1e-3}     # S steps of f32 accumulation, g(t)^2 up to 625
TOL_GRAPH = {"atol": 1e-5, "rtol": 1e-4}

# Window axes of each tensor, cropped to the N valid nodes on disk. Readers zero-pad a cropped
# input back to full_shape and compare only the stored region of an output.
W_AXES = {**{f"{p}_{m}": (0,) for p in ("std", "recon") for m in gdata.MODALITIES},
          "avail": (0,), "node_mask": (0,), "speaker": (0,), "h": (1,), "cond": (1,),
          "adj_struct": (0, 1), "u": (0,), "x0": (1,), "adj_fusion": (1, 2), "logits": (0,),
          "probs": (0,), "reg": (0,), "zx": (2,), "zx_init": (1,), "s_theta_x_t": (1,),
          "s_theta_adj_t": (1, 2), "s_theta_score": (1,)}
# Inputs whose padded region is 0 by construction: zero-filling restores them exactly (asserted).
# The other cropped inputs (noise, s_theta_x_t) have non-zero padded rows that node_mask keeps
# out of every valid output; tests/python/test_golden.py checks that independence.
ZERO_PADDED = {"std_text", "std_audio", "std_visual", "avail", "node_mask", "speaker", "cond",
               "adj_struct", "u", "x0", "adj_fusion", "s_theta_adj_t"}

EM, HEUN = "euler_maruyama_inpaint", "pf_ode_heun_inpaint"
CASES = [
    # name, conversation index in val, rate, pattern, steps, sampler, seed, speakers, description
    ("rate05_s5", 0, 0.5, None, 5, EM, 0, None, "val video at rate 0.5, protocol mask, EM S=5"),
    ("pattern_t", 1, None, "T", 3, HEUN, 1, None,
     "fixed pattern T (camera and mic lost), PF-ODE Heun S=3"),
    ("complete", 2, 0.0, None, None, None, 0, None, "nothing missing: sampler skipped"),
    ("speakers", 3, 0.3, None, 1, EM, 2, "cycle", "several speakers (assigned), rate 0.3, EM S=1"),
]


def assign_speakers(n: int) -> np.ndarray:
    """Deterministic multi-speaker turns: runs of 1-3 utterances over 3 speakers."""
    out, spk, i = np.zeros(n, np.int64), 0, 0
    runs = [2, 1, 3, 1, 2]
    while i < n:
        r = runs[i % len(runs)]
        out[i:i + r] = spk
        spk, i = (spk + 1) % 3, i + r
    return out


def collect(rec: dict, conv, n: int, sde_steps) -> tuple:
    """(tensors dict name -> array, tolerances dict)."""
    t, tol = {}, {}
    for m in gdata.MODALITIES:
        t[m] = conv.feats[m][:n]
        t[f"std_{m}"] = rec["std"][m]
        t[f"recon_{m}"] = rec["recon"][m]
        tol[f"std_{m}"], tol[f"recon_{m}"] = TOL_PART, TOL_SAMPLER
    t.update(avail=rec["avail"], node_mask=rec["node_mask"],
             speaker=np.pad(rec["speaker"].astype(np.float32), (0, len(rec["node_mask"]) - n)),
             h=rec["h"], cond=rec["cond"], adj_struct=rec["adj_struct"], u=rec["u"],
             eig=rec["eig"], lam_obs=rec["lam_obs"], x0=rec["x0"], lam0=rec["lam0"],
             adj_fusion=rec["adj_fusion"], logits=rec["logits"], probs=rec["probs"], reg=rec["reg"])
    tol.update(h=TOL_PART, cond=TOL_PART, adj_struct=TOL_GRAPH, u=TOL_GRAPH, eig=TOL_GRAPH,
               lam_obs=TOL_GRAPH, x0=TOL_SAMPLER, lam0=TOL_SAMPLER, adj_fusion=TOL_SAMPLER,
               logits=TOL_SAMPLER, probs=TOL_SAMPLER, reg=TOL_SAMPLER)
    if "noise" in rec:
        nz, tr = rec["noise"], rec["trace"]
        if len(nz.zx):      # the ODE draws no per-step noise
            t.update(zx=nz.zx, zl=nz.zl)
            tol.update(zx=TOL_EXACT, zl=TOL_EXACT)
        t.update(zx_init=nz.zx_init, zl_init=nz.zl_init,
                 s_theta_x_t=tr["x_t"], s_theta_t=np.array([tr["t"]], np.float32),
                 s_theta_adj_t=tr["adj_t"], s_theta_score=tr["score_x"],
                 s_phi_lam_t=tr["lam_t"], s_phi_t=np.array([tr["t"]], np.float32),
                 s_phi_score=tr["score_lam"])
        tol.update(zx_init=TOL_EXACT, zl_init=TOL_EXACT,
                   s_theta_x_t=TOL_PART, s_theta_adj_t=TOL_GRAPH, s_theta_score=TOL_PART,
                   s_phi_lam_t=TOL_PART, s_phi_score=TOL_PART)
    return t, tol


def torch_check(model_dir: Path, t: dict) -> dict:
    """Max |torch - onnxruntime| per part on the case's own inputs (needs torch)."""
    import torch
    from gsdnet_torch.model import GSDNet
    ck = torch.load(model_dir / "model.pt", weights_only=False)
    net = GSDNet(**ck["cfg"])
    net.load_state_dict(ck["state"])
    net.eval()
    T = lambda x: torch.from_numpy(np.asarray(x, np.float32))[None]  # noqa: E731
    err = {}
    with torch.no_grad():
        h = net.encoders(T(t["std_text"]), T(t["std_audio"]), T(t["std_visual"]))[0]
        err["encoders"] = float(np.abs(h.numpy() - t["h"]).max())
        if "s_theta_score" in t:
            s = net.s_theta(T(t["s_theta_x_t"]), torch.tensor(t["s_theta_t"]), T(t["cond"]),
                            T(t["avail"]), T(t["s_theta_adj_t"]), T(t["node_mask"]))[0]
            err["s_theta"] = float(np.abs(s.numpy() - t["s_theta_score"]).max())
            s = net.s_phi(T(t["s_phi_lam_t"]), torch.tensor(t["s_phi_t"]), T(t["lam_obs"]),
                          T(t["u"]), T(t["cond"]), T(t["avail"]), T(t["node_mask"]))[0]
            err["s_phi"] = float(np.abs(s.numpy() - t["s_phi_score"]).max())
        r = net.recon(T(t["x0"]))
        err["recon"] = max(float(np.abs(a[0].numpy() - t[f"recon_{m}"]).max())
                           for a, m in zip(r, gdata.MODALITIES))
        lg, rg = net.fuse(T(t["x0"]), T(t["avail"]), T(t["adj_fusion"]), T(t["node_mask"]))
        err["fusion"] = max(float(np.abs(lg[0].numpy() - t["logits"]).max()),
                            float(np.abs(rg[0].numpy() - t["reg"]).max()))
    return err


def crop(name: str, a: np.ndarray, n: int, width: int) -> np.ndarray:
    """`a` with its window axes (W_AXES) cut to the first n entries."""
    axes = W_AXES.get(name, ())
    assert all(a.shape[i] == width for i in axes), f"{name}: shape {a.shape}, W axes {axes}"
    region = tuple(slice(0, n) if i in axes else slice(None) for i in range(a.ndim))
    if name in ZERO_PADDED:
        rest = a.copy()
        rest[region] = 0
        assert not rest.any(), f"{name}: non-zero padded region"
    return np.ascontiguousarray(a[region])


def write_case(out: Path, name: str, meta: dict, t: dict, tol: dict, width: int) -> int:
    d = out / name
    d.mkdir(parents=True, exist_ok=True)
    for f in d.glob("*.f32"):
        f.unlink()
    tables = {"meta": meta}
    size = 0
    for k, v in t.items():
        full = np.asarray(v, np.float32)
        a = crop(k, full, meta["n_nodes"], width)
        (d / f"{k}.f32").write_bytes(a.astype("<f4").tobytes())
        size += a.nbytes
        tables[f"tensors.{k}"] = dict(file=f"{k}.f32", shape=list(a.shape))
        if k in W_AXES:
            tables[f"tensors.{k}"]["full_shape"] = list(full.shape)
    tables["tolerances"] = tol
    (d / "case.toml").write_text(write_toml(tables))
    return size


def main():
    model_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "models" / "gsdnet-mosi"
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else ROOT / "tests" / "golden"
    model = OnnxModel(model_dir)
    convs = gdata.load_split(VAL)
    base_sde = model.man.sde
    total = 0
    for name, ci, rate, pattern, steps, sampler, seed, spk, desc in CASES:
        conv = convs[ci]
        if spk:
            conv.speaker = assign_speakers(conv.n)
        n = conv.n
        avail = gmasks.mask_for_pattern(pattern, n) if pattern else \
            gmasks.mask_for_rate(seed, rate, conv.conv_id, n)
        scen = gmasks.scenario_id(rate, pattern)
        key = stream_key(seed, scen, conv.conv_id, 0)
        model.man.sde = replace(base_sde, steps=steps or base_sde.steps,
                                sampler=sampler or base_sde.sampler)
        noise = draw_noise(key, model.man.sde.noise_steps, model.man.width, model.man.d,
                           model.man.k)
        rec = {}
        run_window(model, conv.feats, avail, conv.speaker, "gsdnet", noise=noise, rec=rec)
        t, tol = collect(rec, conv, n, steps)
        meta = dict(description=desc, conv_id=conv.conv_id, n_nodes=n, completion="gsdnet",
                    seed=seed, scenario=scen, window_index=0,
                    missing_rate=-1.0 if rate is None else rate, pattern=pattern or "",
                    steps=model.man.sde.steps if "noise" in rec else 0,
                    sampler=model.man.sde.sampler if "noise" in rec else "",
                    sampler_skipped="noise" not in rec,
                    model=model.man.raw["model"]["name"],
                    note="noise = stream key derive(seed, 2, scenario, fnv1a64(conv_id), 0)")
        size = write_case(out, name, meta, t, tol, model.man.width)
        print(f"{name}: N = {n}, {size / 1024:.1f} KiB of tensors")
        total += size
        try:
            err = torch_check(model_dir, t)
            print(f"{name}: torch vs onnxruntime max abs error {err}")
        except ImportError:
            print(f"{name}: torch not installed, PyTorch agreement not checked")
    model.man.sde = base_sde
    print(f"golden tensors: {total / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
