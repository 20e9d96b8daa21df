"""Why the diffusion completion loses to mean fill on IEMOCAP val (issue 23, items 1 and 2).

For every rate 0.1-0.5 and the patterns T, A (mask seeds 0-2, the masks and sampler keys of
`gsdnet_ref.evaluate`), each window of val/ is completed in several ways and fused by the same
fusion part; reported per completion: weighted F1 / accuracy (mean over mask seeds) and the
distance of the completed latents to the true latents of the missing entries (val has every
modality, so `encoders(full inputs)` is the truth): mean over missing (utterance, modality)
entries of ||x0 - h_true||^2 / d, separately for missing text and missing audio.

Completions (all through the committed fusion.onnx; noise keys as gsdnet eval):
- meanfill: the encoding of the training mean (h of the masked input), lam0 = lam_obs;
- heun3: the deployed sampler (PF-ODE Heun, manifest steps), one sample; heun1 / heun6: fewer /
  more steps; em10: Euler-Maruyama 10 steps, what stage 2 fine-tuned the fusion on;
- heun3_s8_prob: 8 samples, probabilities averaged (today's --samples 8);
  heun3_s8_lat: the same 8 samples averaged in latent space (x0 and lam0), one fusion call;
- tw1: Tweedie's posterior mean from the first score call of the sampler,
  x0 = x_1 + std(1)^2 s_theta(x_1, 1) (observed entries exact), lam0 likewise with s_phi;
  tw1_s8: the mean of 8 such one-call estimates (the 8 samples' initial noise);
  tw_t1, tw_t2: the Tweedie estimate at the sampler's later step times;
- oracle: the true latents at the missing entries (and the true spectrum): the upper bound;
  oracle_obs: the true latents fused as if observed (availability bits all 1: the fusion's
  observed-latent path, i.e. the rate-0 input);
  oracle_noise: the true latents plus Gaussian noise of the same per-modality error as heun3
  (is a sample read worse than an equally distant unbiased guess?).
    python3 research/completion_diagnosis.py MODEL_DIR SPLIT_DIR --json OUT [--seeds 0 1 2]
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from gsdnet_ref import data as gdata
from gsdnet_ref import graph as ggraph
from gsdnet_ref import masks as gmasks
from gsdnet_ref import metrics as gmetrics
from gsdnet_ref.multisample import sample_key
from gsdnet_ref.pipeline import OnnxModel, prepare_inputs, row_temperatures, softmax_t
from gsdnet_ref.sampler import EM, HEUN, draw_noise, marginal_std, sample, stream_key

S = 8


def _b(x):
    return np.asarray(x, np.float32)[None]


def window_state(model, feats, avail_n, speaker):
    man, w, mm = model.man, model.man.width, model.man.m
    n = len(speaker)
    node_mask = np.zeros(w, np.float32)
    node_mask[:n] = 1
    avail = np.zeros((w, mm), np.float32)
    avail[:n] = avail_n
    xs = prepare_inputs(man, feats, avail_n.astype(bool), "meanfill")
    h = model.run("encoders", **{m: _b(xs[m]) for m in man.modalities})["h"][0]
    xf = prepare_inputs(man, feats, np.ones_like(avail_n, bool), "meanfill")
    h_true = model.run("encoders", **{m: _b(xf[m]) for m in man.modalities})["h"][0]
    h_true = h_true * node_mask[None, :, None]
    cond = (h * avail.T[:, :, None] * node_mask[None, :, None]).astype(np.float32)
    a, u, _ = ggraph.build_graph(speaker, w, man.k, man.window_same, man.window_other)
    lam_obs = ggraph.spectrum(cond, u, node_mask).astype(np.float32)
    lam_true = ggraph.spectrum(h_true, u, node_mask).astype(np.float32)
    obs = (avail.T * node_mask[None, :]).astype(bool)[:, :, None]
    missing = (~obs[:, :, 0]) & (node_mask[None, :] > 0)            # [M, W]
    return dict(n=n, node_mask=node_mask, avail=avail, h=h, h_true=h_true, cond=cond, a=a,
                u=u, lam_obs=lam_obs, lam_true=lam_true, obs=obs, missing=missing)


def score_fns(model, st, log=None):
    u32 = st["u"].astype(np.float32)
    man = model.man

    def s_theta(x, t, adj_t):
        sc = model.run("s_theta", x_t=_b(x), t=np.array([t], np.float32), cond=_b(st["cond"]),
                       avail=_b(st["avail"]), adj_t=_b(adj_t),
                       node_mask=_b(st["node_mask"]))["score"][0]
        if log is not None:
            sd = marginal_std(float(t), man.sde.sigma_x)
            log.append(["x", float(t), (x + np.float32(sd * sd) * sc).astype(np.float32)])
        return sc

    def s_phi(lam, t):
        sc = model.run("s_phi", lam_t=_b(lam), t=np.array([t], np.float32),
                       lam_obs=_b(st["lam_obs"]), u=_b(u32), cond=_b(st["cond"]),
                       avail=_b(st["avail"]), node_mask=_b(st["node_mask"]))["score"][0]
        if log is not None:
            sd = marginal_std(float(t), man.sde.sigma_lambda)
            log.append(["l", float(t), (lam + np.float32(sd * sd) * sc).astype(np.float32)])
        return sc
    return s_theta, s_phi


def run_sampler(model, st, sde, key, log=None):
    noise = draw_noise(key, sde.noise_steps, model.man.width, model.man.d, model.man.k,
                       model.man.m)
    s_theta, s_phi = score_fns(model, st, log)
    return sample(sde, st["h"], st["cond"], st["avail"], st["node_mask"], st["u"],
                  st["lam_obs"], s_theta, s_phi, noise)


def tweedie_points(st, log, full):
    """The (x0, lam0) Tweedie estimates of the calls in `log` (pairs of x / lam calls, in
    order), observed entries and fully observed spectra exact."""
    xs = [e[2] for e in log if e[0] == "x"]
    ls = [e[2] for e in log if e[0] == "l"]
    return [(np.where(st["obs"], st["h"], x) * st["node_mask"][None, :, None],
             np.where(full, st["lam_obs"], lam)) for x, lam in zip(xs, ls)]


def fuse(model, st, x0, lam0):
    adj_rec = ggraph.adj_from_lam(st["u"], np.asarray(lam0).mean(0).astype(np.float64))
    adj = np.stack([st["a"], adj_rec]).astype(np.float32)
    out = model.run("fusion", x=_b(np.asarray(x0, np.float32)), avail=_b(st["avail"]), adj=_b(adj),
                    node_mask=_b(st["node_mask"]))
    return out["logits"][0][:st["n"]]


def completions(model, st, key, rng):
    """name -> list of (x0, lam0) (one per sample; several = probabilities averaged)."""
    man = model.man
    sde = man.sde
    n_valid = st["node_mask"].sum()
    full = ((st["avail"] * st["node_mask"][:, None]).sum(0) >= n_valid)[:, None]
    out = {"meanfill": [(st["h"] * st["node_mask"][None, :, None], st["lam_obs"])]}
    samples, tw = [], []
    for s in range(S):
        log = []
        samples.append(run_sampler(model, st, sde, sample_key(key, s), log))
        pts = tweedie_points(st, log, full)
        tw.append(pts)
    out["heun3"] = [samples[0]]
    out["heun3_s8_prob"] = samples
    out["heun3_s8_lat"] = [(np.mean([x for x, _ in samples], 0), np.mean([l for _, l in samples], 0))]
    out["tw1"] = [tw[0][0]]
    out["tw1_s8"] = [(np.mean([p[0][0] for p in tw], 0), np.mean([p[0][1] for p in tw], 0))]
    # Heun-3 calls: t0, t1 (Euler predictor), t1, t2 (predictor), t2, t3 (predictor)
    out["tw_t1"] = [tw[0][2]]
    out["tw_t2"] = [tw[0][4]]
    for name, steps, sampler in (("heun1", 1, HEUN), ("heun6", 6, HEUN), ("em10", 10, EM)):
        out[name] = [run_sampler(model, st, replace(sde, steps=steps, sampler=sampler), key)]
    oracle_x = np.where(st["obs"], st["h"], st["h_true"]) * st["node_mask"][None, :, None]
    out["oracle"] = [(oracle_x, np.where(full, st["lam_obs"], st["lam_true"]))]
    x_h = samples[0][0]
    err = []
    for m in range(man.m):
        sel = st["missing"][m]
        err.append(np.sqrt(np.mean((x_h[m][sel] - st["h_true"][m][sel]) ** 2)) if sel.any() else 0.0)
    noise = rng.standard_normal(oracle_x.shape).astype(np.float32) * \
        np.asarray(err, np.float32)[:, None, None]
    out["oracle_noise"] = [(np.where(st["obs"], oracle_x, oracle_x + noise)
                            * st["node_mask"][None, :, None], out["oracle"][0][1])]
    out["oracle_obs"] = out["oracle"]       # fused with every entry marked observed
    return out


def scenario(model, convs, seed, rate=None, pattern=None):
    man = model.man
    sc = gmasks.scenario_id(rate, pattern)
    rng = np.random.default_rng(1000 * seed + sc)
    probs, sq, cnt, labels = {}, {}, {}, []
    for c in convs:
        avail_c = (gmasks.mask_for_pattern(pattern, c.n, man.letters) if pattern
                   else gmasks.mask_for_rate(seed, rate, c.conv_id, c.n, man.m))
        for wi, sl in enumerate(gdata.window_slices(c.n, man.width)):
            feats = {m: c.feats[m][sl] for m in man.modalities}
            av = np.asarray(avail_c[sl])
            st = window_state(model, feats, av, c.speaker[sl])
            temps = row_temperatures(man.by_avail, st["avail"], man.bits)[:st["n"]]
            key = stream_key(seed, sc, c.conv_id, wi)
            if not st["missing"].any():
                comp = {name: [(st["h"] * st["node_mask"][None, :, None], st["lam_obs"])]
                        for name in NAMES}
            else:
                comp = completions(model, st, key, rng)
            for name, runs in comp.items():
                stf = dict(st, avail=np.repeat(st["node_mask"][:, None], model.man.m, 1)
                           ) if name == "oracle_obs" else st
                p = np.mean([softmax_t(fuse(model, stf, x0, l0), temps).astype(np.float64)
                             for x0, l0 in runs], 0)
                probs.setdefault(name, []).append(p)
                x0 = runs[0][0] if len(runs) == 1 else None
                for m in range(man.m):
                    sel = st["missing"][m]
                    if x0 is None or not sel.any():
                        continue
                    e = ((x0[m][sel] - st["h_true"][m][sel]) ** 2).mean(-1)
                    sq.setdefault((name, m), []).append(e)
            labels.append(c.label[sl])
    y = np.concatenate(labels)
    res = {}
    for name, ps in probs.items():
        p = np.concatenate(ps)
        cl = gmetrics.classification(p.argmax(-1), y, len(man.classes))
        row = dict(f1_weighted=cl["f1_weighted"], accuracy=cl["accuracy"],
                   nll=gmetrics.nll(p.astype(np.float32), y))
        for m, mod in enumerate(man.modalities):
            if (name, m) in sq:
                row[f"dist_{mod}"] = float(np.concatenate(sq[(name, m)]).mean())
        res[name] = row
    return res


NAMES = ("meanfill", "heun3", "heun3_s8_prob", "heun3_s8_lat", "tw1", "tw1_s8", "tw_t1", "tw_t2",
         "heun1", "heun6", "em10", "oracle", "oracle_noise", "oracle_obs")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model_dir")
    p.add_argument("split_dir")
    p.add_argument("--json", required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--rates", type=float, nargs="+", default=[0.1, 0.2, 0.3, 0.4, 0.5])
    p.add_argument("--patterns", nargs="+", default=["T", "A"])
    a = p.parse_args(argv)
    model = OnnxModel(a.model_dir)
    convs = gdata.load_split(a.split_dir, model.man.dims, getattr(model.man, "files", None))
    grid = [(r, None) for r in a.rates] + [(None, q) for q in a.patterns]
    out = dict(model=model.man.raw["model"]["name"], split=Path(a.split_dir).name,
               seeds=a.seeds, sampler=model.man.sde.sampler, steps=model.man.sde.steps,
               samples=S, rows=[])
    for rate, pattern in grid:
        t0 = time.time()
        per = [scenario(model, convs, s, rate, pattern) for s in a.seeds]
        row = {name: {k: float(np.mean([q[name][k] for q in per])) for k in per[0][name]}
               for name in per[0]}
        out["rows"].append(dict(missing_rate=rate, pattern=pattern, completions=row))
        label = pattern or f"{rate:.1f}"
        print(f"{label} ({time.time() - t0:.0f} s): " + "  ".join(
            f"{n} {v['f1_weighted']:.3f}" + (f"/{v.get('dist_text', float('nan')):.2f}"
                                             f"/{v.get('dist_audio', float('nan')):.2f}")
            for n, v in row.items()), flush=True)
        Path(a.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
