"""Writes the golden cases tests/golden/<case>/ from the ONNX parts (docs/DESIGN.md format).

Each case runs gsdnet_ref.pipeline.run_window on one window, stores every component's inputs
and outputs as raw float32 plus case.toml with shapes and named tolerances, and checks the
PyTorch parts (models/<name>/model.pt) against onnxruntime, printing the max errors. Every
window axis (W) is cropped to the case's N valid nodes; case.toml records the W-padded
`full_shape` that readers zero-fill back to (W_AXES below says which axes and why it is exact).
The CMU-MOSI cases (models/gsdnet-mosi) run val conversations; the IEMOCAP cases
(models/gsdnet-iemocap6 and -iemocap4: text 384, the MiniLM frontend's width, + audio 47, 6 or
4 classes, two speakers) run a synthetic window whose raw features are drawn at the model's
training mean and std (the text rows are such draws, not the embedding of any transcript: the
frontend has its own golden cases, tests/golden/text_frontend), so no IEMOCAP vector is
committed (its licence forbids it); their case.toml names the model folder, modalities and
classes.
    python3 -m gsdnet_torch.make_golden [MODEL_DIR] [OUT_DIR]
Without MODEL_DIR, every model of GOLDEN_MODELS that exists gets its cases; with it, the cases
of that model's name (a three-modality model of another name gets the CMU-MOSI cases).
"""
from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from gsdnet_ref.tomlw import write_toml
from gsdnet_ref import data as gdata
from gsdnet_ref import masks as gmasks
from gsdnet_ref.paths import ROOT, SHARED_DATA
from gsdnet_ref.pipeline import OnnxModel, run_window
from gsdnet_ref.sampler import draw_noise, stream_key

VAL = SHARED_DATA / "cmu-mosi" / "val"
SYNTH_SEED = 11   # numpy default_rng seed of the synthetic raw features
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
# Axes of length M (modalities): every tensor with one is [.., M, ..] in slot order.

EM, HEUN = "euler_maruyama_inpaint", "pf_ode_heun_inpaint"
CASES = [
    # name, conversation index in val, rate, pattern, steps, sampler, seed, speakers, description
    ("rate05_s5", 0, 0.5, None, 5, EM, 0, None, "val video at rate 0.5, protocol mask, EM S=5"),
    ("pattern_t", 1, None, "T", 3, HEUN, 1, None,
     "fixed pattern T (camera and mic lost), PF-ODE Heun S=3"),
    ("complete", 2, 0.0, None, None, None, 0, None, "nothing missing: sampler skipped"),
    ("speakers", 3, 0.3, None, 1, EM, 2, "cycle", "several speakers (assigned), rate 0.3, EM S=1"),
]
# name ({k}: the model's class count), synthetic conversation id, N, rate, pattern, steps,
# sampler, seed, description
IEMOCAP_CASES = [
    ("dyadic{k}_synthetic", "synthetic-dyadic-0", 24, 0.3, None, None, None, 0,
     "IEMOCAP {k}-way model (text + audio, {k} classes), two speakers taking turns, rate 0.3 "
     "protocol mask, the manifest's sampler (PF-ODE Heun S=3); synthetic raw features"),
]
# every bundled model has golden cases, so `gsdnet check --model` can compare each of them
GOLDEN_MODELS = {"gsdnet-mosi": "mosi", "gsdnet-iemocap6": "iemocap", "gsdnet-iemocap4": "iemocap"}


def assign_speakers(n: int) -> np.ndarray:
    """Deterministic multi-speaker turns: runs of 1-3 utterances over 3 speakers."""
    out, spk, i = np.zeros(n, np.int64), 0, 0
    runs = [2, 1, 3, 1, 2]
    while i < n:
        r = runs[i % len(runs)]
        out[i:i + r] = spk
        spk, i = (spk + 1) % 3, i + r
    return out


def dyadic_speakers(n: int) -> np.ndarray:
    """Two speakers taking turns, sometimes two or three utterances in a row (the run lengths
    are not periodic within 24 turns: a simple spectrum with the IEMOCAP windows 8 / 1)."""
    out, spk, i, runs = np.zeros(n, np.int64), 0, 0, [1, 2, 1, 1, 3, 2, 1, 1, 1, 2]
    j = 0
    while i < n:
        out[i:i + runs[j % len(runs)]] = spk
        i, spk, j = i + runs[j % len(runs)], 1 - spk, j + 1
    return out


def synthetic_conversation(man, conv_id: str, n: int) -> gdata.Conversation:
    """Raw features mean + std * N(0, 1) per column of the model's training statistics (the
    mean itself in a constant column), dyadic speakers, label 0 (unused)."""
    rs = np.random.default_rng(SYNTH_SEED)
    feats = {m: (man.stats[m][0] + man.stats[m][1] * rs.standard_normal((n, man.dims[m])))
             .astype(np.float32) for m in man.modalities}
    return gdata.Conversation(conv_id, [f"{conv_id}_{i}" for i in range(n)], feats, None,
                              np.zeros(n, np.int64), dyadic_speakers(n))


def collect(rec: dict, conv, n: int, mods) -> tuple:
    """(tensors dict name -> array, tolerances dict); `mods` the model's modalities."""
    t, tol = {}, {}
    for m in mods:
        t[m] = conv.feats[m][:n]
        t[f"std_{m}"] = rec["std"][m]
        t[f"recon_{m}"] = rec["recon"][m]
        tol[f"std_{m}"], tol[f"recon_{m}"] = TOL_PART, TOL_SAMPLER
    t.update(avail=rec["avail"], node_mask=rec["node_mask"],
             speaker=np.pad(rec["speaker"].astype(np.float32), (0, len(rec["node_mask"]) - n)),
             h=rec["h"], cond=rec["cond"], adj_struct=rec["adj_struct"], u=rec["u"],
             eig=rec["eig"], lam_obs=rec["lam_obs"], x0=rec["x0"], lam0=rec["lam0"],
             adj_fusion=rec["adj_fusion"], logits=rec["logits"], probs=rec["probs"])
    tol.update(h=TOL_PART, cond=TOL_PART, adj_struct=TOL_GRAPH, u=TOL_GRAPH, eig=TOL_GRAPH,
               lam_obs=TOL_GRAPH, x0=TOL_SAMPLER, lam0=TOL_SAMPLER, adj_fusion=TOL_SAMPLER,
               logits=TOL_SAMPLER, probs=TOL_SAMPLER)
    if rec["reg"] is not None:   # models with a regression head only
        t["reg"], tol["reg"] = rec["reg"], TOL_SAMPLER
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
    mods = net.cfg["modalities"]
    T = lambda x: torch.from_numpy(np.asarray(x, np.float32))[None]  # noqa: E731
    err = {}
    with torch.no_grad():
        h = net.encoders(*[T(t[f"std_{m}"]) for m in mods])[0]
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
                           for a, m in zip(r, mods))
        lg, rg = net.fuse(T(t["x0"]), T(t["avail"]), T(t["adj_fusion"]), T(t["node_mask"]))
        err["fusion"] = max([float(np.abs(lg[0].numpy() - t["logits"]).max())]
                            + ([float(np.abs(rg[0].numpy() - t["reg"]).max())]
                               if rg is not None else []))
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


def run_case(model, model_dir: Path, out: Path, conv, name, rate, pattern, steps, sampler,
             seed, desc, extra_meta=None) -> int:
    """Runs one window through the reference pipeline, writes the case, checks torch."""
    man, n = model.man, conv.n
    avail = gmasks.mask_for_pattern(pattern, n, man.letters) if pattern else \
        gmasks.mask_for_rate(seed, rate, conv.conv_id, n, man.m)
    scen = gmasks.scenario_id(rate, pattern)
    key = stream_key(seed, scen, conv.conv_id, 0)
    base_sde = man.sde
    man.sde = replace(base_sde, steps=steps or base_sde.steps, sampler=sampler or base_sde.sampler)
    noise = draw_noise(key, man.sde.noise_steps, man.width, man.d, man.k, man.m)
    rec = {}
    run_window(model, conv.feats, avail, conv.speaker, "gsdnet", noise=noise, rec=rec)
    t, tol = collect(rec, conv, n, man.modalities)
    meta = dict(description=desc, conv_id=conv.conv_id, n_nodes=n, completion="gsdnet",
                seed=seed, scenario=scen, window_index=0,
                missing_rate=-1.0 if rate is None else rate, pattern=pattern or "",
                steps=man.sde.steps if "noise" in rec else 0,
                sampler=man.sde.sampler if "noise" in rec else "",
                sampler_skipped="noise" not in rec, model=man.raw["model"]["name"],
                note="noise = stream key derive(seed, 2, scenario, fnv1a64(conv_id), 0)",
                **(extra_meta or {}))
    man.sde = base_sde
    size = write_case(out, name, meta, t, tol, man.width)
    print(f"{name}: N = {n}, {size / 1024:.1f} KiB of tensors")
    try:
        print(f"{name}: torch vs onnxruntime max abs error {torch_check(model_dir, t)}")
    except ImportError:
        print(f"{name}: torch not installed, PyTorch agreement not checked")
    return size


def mosi_cases(model, model_dir: Path, out: Path) -> int:
    convs = gdata.load_split(VAL, model.man.dims)
    total = 0
    for name, ci, rate, pattern, steps, sampler, seed, spk, desc in CASES:
        conv = convs[ci]
        if spk:
            conv.speaker = assign_speakers(conv.n)
        total += run_case(model, model_dir, out, conv, name, rate, pattern, steps, sampler,
                          seed, desc)
    return total


def iemocap_cases(model, model_dir: Path, out: Path) -> int:
    total, man = 0, model.man
    try:
        rel = str(model_dir.resolve().relative_to(ROOT))
    except ValueError:
        rel = str(model_dir)
    extra = dict(model_dir=rel, modalities=list(man.modalities), classes=list(man.classes),
                 synthetic=f"raw features = training mean + training std * N(0, 1), numpy "
                           f"default_rng({SYNTH_SEED}), modalities in slot order; speakers "
                           f"python/gsdnet_torch/make_golden.py dyadic_speakers; no IEMOCAP vectors")
    k = len(man.classes)
    for name, cid, n, rate, pattern, steps, sampler, seed, desc in IEMOCAP_CASES:
        conv = synthetic_conversation(man, cid, n)
        total += run_case(model, model_dir, out, conv, name.format(k=k), rate, pattern, steps,
                          sampler, seed, desc.format(k=k), extra)
    return total


def main():
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else ROOT / "tests" / "golden"
    if len(sys.argv) > 1:
        dirs = [Path(sys.argv[1])]
    else:
        dirs = [ROOT / "models" / m for m in GOLDEN_MODELS if (ROOT / "models" / m).is_dir()]
    total = 0
    for model_dir in dirs:
        model = OnnxModel(model_dir)
        kind = GOLDEN_MODELS.get(model.man.raw["model"]["name"],
                                 "mosi" if model.man.m == 3 else "iemocap")
        total += (mosi_cases if kind == "mosi" else iemocap_cases)(model, model_dir, out)
    print(f"golden tensors: {total / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
