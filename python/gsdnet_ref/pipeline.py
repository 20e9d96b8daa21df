"""The reference pipeline: the five ONNX parts run by onnxruntime, graph/spectrum/sampler in numpy.

Owns: reading manifest.toml (the model's modalities and sizes from `[modalities]`, slot order
canonical T, A, V; a manifest of the earlier format with the sizes in `[dims]` is read too; K
classes; whether a `reg` output exists), one onnxruntime session per part, and `run_window`,
which turns one conversation window (raw features of the model's M modalities, availability
[N, M], speakers) into logits/probs (and reg where the model has a regression head) for a
completion mode, recording every intermediate tensor for golden cases (`recon_raw`: the
reconstructions destandardised, [N, dim]). Follows docs/DESIGN.md. The parts' declared shapes
hold numbers or the symbolic axes "batch" / "window" (`part_shape`); `[dims] buckets` (absent:
[window]) are the window sizes the runtime runs at. The reference always runs [1, W].
`logits` are the fusion part's output; `probs = softmax(logits / T)` with the manifest's
`[calibration] temperature` T (absent: 1, the uncalibrated softmax; src/pipeline.rs applies the
same in f32).
"""
from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from . import completion as gcompletion
from . import data as gdata
from . import graph as ggraph
from .sampler import Noise, Sde, draw_noise, sample, stream_key  # noqa: F401 (re-export)

COMPLETIONS = ("gsdnet", "meanfill", "zero")


@dataclass
class Manifest:
    raw: dict
    width: int
    d: int
    k: int
    window_same: int
    window_other: int
    sde: Sde
    stats: dict
    temperature: float = 1.0
    # Temperature per availability bits (T = 1, A = 2, V = 4); index 0 and unlisted patterns
    # hold `temperature` (src/calibration.rs `by_avail`).
    by_avail: tuple = (1.0,) * 8
    dims: dict = None            # present modalities -> feature size, canonical order
    classes: tuple = gdata.MOSI_CLASSES
    has_regression: bool = True
    buckets: tuple = ()          # `[dims] buckets`: ascending window sizes ending at W
    # `[training] feature_files`: the split file of a modality read in another view than
    # `m.f32` (text_minilm.f32 for a model whose text comes from the sentence-encoder frontend)
    files: dict = None

    @property
    def modalities(self) -> tuple:
        return tuple(self.dims)

    @property
    def m(self) -> int:
        return len(self.dims)

    @property
    def letters(self) -> str:
        return "".join(gdata.LETTERS[m] for m in self.dims)

    @property
    def bits(self) -> np.ndarray:
        """Availability bit of each slot (T = 1, A = 2, V = 4 by name, not by slot)."""
        return np.array([1 << gdata.MODALITIES.index(m) for m in self.dims], np.int64)


T_MIN, T_MAX = 0.01, 100.0   # as src/calibration.rs: logits / T stays finite in f32


def load_temperature(raw: dict) -> float:
    """`[calibration] temperature`: absent = 1.0; a finite number in [T_MIN, T_MAX]."""
    return _temperature_value(raw.get("calibration", {}).get("temperature", 1.0))


def _temperature_value(t) -> float:
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) \
            or not T_MIN <= t <= T_MAX:
        raise ValueError(f"[calibration] temperature must be a finite number in "
                         f"[{T_MIN}, {T_MAX}], got {t!r}")
    return float(t)


def pattern_bits(key: str) -> int:
    """Availability bits of a `[calibration.patterns]` key such as "TA" (letters T, A, V, each
    at most once)."""
    return gcompletion.pattern_bits(key, "[calibration.patterns]")


def load_by_avail(raw: dict) -> tuple:
    """The temperature of each availability bits value: `[calibration.patterns]` over the
    scalar `[calibration] temperature`."""
    cal = raw.get("calibration", {})
    temps = [load_temperature(raw)] * 8
    patterns = cal.get("patterns", {})
    if not isinstance(patterns, dict):
        raise ValueError("[calibration] patterns must be a table of pattern = temperature")
    for key, t in patterns.items():
        temps[pattern_bits(key)] = _temperature_value(t)
    return tuple(temps)


def row_temperatures(by_avail, avail: np.ndarray, bits=(1, 2, 4)) -> np.ndarray:
    """[W, 1] f32 temperatures of the rows of a window from their availability [W, M] (0/1);
    `bits` the availability bit of each slot (Manifest.bits)."""
    bits = (np.asarray(avail) > 0).astype(np.int64) @ np.asarray(bits, np.int64)
    return np.asarray(by_avail, np.float32)[bits][:, None]


def softmax_t(logits: np.ndarray, temperature) -> np.ndarray:
    """softmax(logits / T) over the last axis in f32, max-subtracted (T = 1: logits unchanged);
    T a scalar or per-row temperatures broadcast against `logits`."""
    z = np.asarray(logits, np.float32) / np.float32(temperature)
    z = z - z.max(-1, keepdims=True)
    return (np.exp(z) / np.exp(z).sum(-1, keepdims=True)).astype(np.float32)


def manifest_dims(raw: dict) -> dict:
    """Present modalities -> feature size in canonical order: `[modalities]`, or the sizes in
    `[dims]` of the earlier format. At least two, each size in 1..=65536."""
    table = raw["modalities"] if "modalities" in raw else \
        {m: v for m, v in raw["dims"].items() if m in gdata.MODALITIES}
    bad = [m for m in table if m not in gdata.MODALITIES]
    if bad:
        raise ValueError(f"[modalities]: unknown modality {bad} (names: {gdata.MODALITIES})")
    dims = {m: table[m] for m in gdata.MODALITIES if m in table}
    if len(dims) < 2 or any(isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 65536
                            for v in dims.values()):
        raise ValueError(f"[modalities] needs two or three positive sizes, got {table}")
    return dims


SYMBOLIC = ("batch", "window")
PARTS = ("encoders", "s_theta", "s_phi", "recon", "fusion")


def part_shape(shape, batch: int = 1, window: int | None = None) -> list:
    """A declared part shape (numbers, or "batch" / "window" for the symbolic axes) with the
    symbolic axes set; `window` None keeps them as they are (validation only)."""
    if not isinstance(shape, list) or not shape:
        raise ValueError(f"part shape must be a non-empty array, got {shape!r}")
    for s in shape:
        if isinstance(s, bool) or not (isinstance(s, int) and s >= 1 or s in SYMBOLIC):
            raise ValueError(f"part shape entry {s!r}: a positive size or one of {SYMBOLIC}")
    if window is None:
        return list(shape)
    return [batch if s == "batch" else window if s == "window" else s for s in shape]


def load_buckets(dims: dict) -> tuple:
    """`[dims] buckets`: ascending positive window sizes, the last one W; absent = (W,)."""
    w = dims["window"]
    b = dims.get("buckets", [w])
    if not isinstance(b, list) or not b or any(isinstance(x, bool) or not isinstance(x, int)
                                               or x < 1 for x in b) \
            or any(x >= y for x, y in zip(b, b[1:])) or b[-1] != w:
        raise ValueError(f"[dims] buckets must ascend and end at the window {w}, got {b!r}")
    return tuple(b)


def load_manifest(folder) -> Manifest:
    raw = tomllib.loads((Path(folder) / "manifest.toml").read_text())
    dims, g, s, nz = raw["dims"], raw["graph"], raw["sde"], raw["normalisation"]
    mdims = manifest_dims(raw)
    stats = {m: (np.asarray(nz[f"{m}_mean"], np.float32), np.asarray(nz[f"{m}_std"], np.float32))
             for m in mdims}
    for m, (mean, std) in stats.items():
        if mean.shape != (mdims[m],) or std.shape != (mdims[m],):
            raise ValueError(f"[normalisation] {m}: {mean.shape} / {std.shape}, size {mdims[m]}")
    classes = tuple(raw["model"].get("classes", gdata.MOSI_CLASSES))
    if len(classes) < 2:
        raise ValueError(f"[model] classes: need at least two, got {classes}")
    buckets = load_buckets(dims)
    for p in PARTS:
        for x in raw.get("parts", {}).get(p, {}).get("inputs", []) + \
                raw.get("parts", {}).get(p, {}).get("outputs", []):
            part_shape(x["shape"])
    return Manifest(raw, dims["window"], dims["latent"], dims["k"], g["window_same"],
                    g["window_other"], Sde(s["sigma_x"], s["sigma_lambda"], s["eps"], s["steps"],
                        s.get("sampler", "euler_maruyama_inpaint")),
                    stats, load_temperature(raw), load_by_avail(raw), mdims, classes,
                    bool(raw["model"].get("has_regression", True)), buckets,
                    dict(raw.get("training", {}).get("feature_files", {})))


class OnnxModel:
    """Sessions of the five parts of one model folder (single-threaded by default)."""

    def __init__(self, folder, threads: int = 1):
        self.folder = Path(folder)
        self.man = load_manifest(folder)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.sess = {p: ort.InferenceSession(str(self.folder / self.man.raw["parts"][p]["file"]),
                                             opts, providers=["CPUExecutionProvider"])
                     for p in PARTS}

    def run(self, part: str, **inputs):
        sess = self.sess[part]
        outs = sess.run(None, {k: np.asarray(v, np.float32) for k, v in inputs.items()})
        return dict(zip([o.name for o in sess.get_outputs()], outs))


def _b(x):
    return np.asarray(x, np.float32)[None]


def prepare_inputs(man: Manifest, conv_feats: dict, avail_n: np.ndarray, completion: str):
    """Standardised, masked [W, dim] inputs per modality of the model (zero-filled for
    `zero`)."""
    out = {}
    for j, m in enumerate(man.modalities):
        raw = np.asarray(conv_feats[m])
        if raw.shape != (len(avail_n), man.dims[m]):
            raise ValueError(f"{m}: shape {raw.shape}, expected ({len(avail_n)}, {man.dims[m]})")
        if not np.all(np.isfinite(raw[avail_n[:, j]])):
            raise ValueError(f"{m}: non-finite values in observed rows")
        mean, std = man.stats[m]
        raw = np.where(avail_n[:, j:j + 1], raw, 0.0).astype(np.float32)   # missing rows unread
        fill = gdata.zero_fill if completion == "zero" else gdata.standardise
        out[m] = fill(raw, mean, std, avail_n[:, j], man.width)
    return out


def run_window(model: OnnxModel, feats: dict, avail_n: np.ndarray, speaker: np.ndarray,
               completion: str = "gsdnet", noise: Noise | None = None, noise_key: int | None = None,
               rec: dict | None = None) -> dict:
    """Runs one window of N <= W utterances; returns logits/probs [N, ...] and reg [N] (None
    without a regression head) (+ `rec` filled). `avail_n` is [N, M], columns the model's
    modality slots.

    For `gsdnet` the sampler noise comes from `noise`, or is drawn from `noise_key`.
    """
    man, w, mm = model.man, model.man.width, model.man.m
    if completion not in COMPLETIONS:
        raise ValueError(f"unknown completion {completion!r}")
    n = len(speaker)
    if avail_n.shape != (n, mm) or n == 0 or n > w:
        raise ValueError(f"bad window: {n} nodes, avail {avail_n.shape}")
    if not np.all(avail_n.any(axis=1)):
        raise ValueError("an utterance has no observed modality")
    rec = {} if rec is None else rec
    node_mask = np.zeros(w, np.float32)
    node_mask[:n] = 1
    avail = np.zeros((w, mm), np.float32)
    avail[:n] = avail_n
    xs = prepare_inputs(man, feats, avail_n.astype(bool), completion)
    h = model.run("encoders", **{m: _b(xs[m]) for m in man.modalities})["h"][0]
    cond = (h * avail.T[:, :, None] * node_mask[None, :, None]).astype(np.float32)
    a, u, eig = ggraph.build_graph(speaker, w, man.k, man.window_same, man.window_other)
    u32 = u.astype(np.float32)
    lam_obs = ggraph.spectrum(cond, u, node_mask).astype(np.float32)
    rec.update(node_mask=node_mask, avail=avail, speaker=speaker, std=xs, h=h, cond=cond,
               adj_struct=a.astype(np.float32), u=u32, eig=eig.astype(np.float32),
               lam_obs=lam_obs)
    missing = np.any((avail == 0) & (node_mask[:, None] > 0))
    if completion == "gsdnet" and missing:
        if noise is None:
            noise = draw_noise(noise_key, man.sde.noise_steps, w, man.d, man.k, mm)
        s_theta = lambda x, t, adj_t: model.run(  # noqa: E731
            "s_theta", x_t=_b(x), t=np.array([t], np.float32), cond=_b(cond), avail=_b(avail),
            adj_t=_b(adj_t), node_mask=_b(node_mask))["score"][0]
        s_phi = lambda lam, t: model.run(  # noqa: E731
            "s_phi", lam_t=_b(lam), t=np.array([t], np.float32), lam_obs=_b(lam_obs), u=_b(u32),
            cond=_b(cond), avail=_b(avail), node_mask=_b(node_mask))["score"][0]
        trace = {}
        x0, lam0 = sample(man.sde, h, cond, avail, node_mask, u, lam_obs, s_theta, s_phi, noise,
                          trace)
        rec.update(noise=noise, trace=trace)
    else:
        x0, lam0 = (h * node_mask[None, :, None]).astype(np.float32), lam_obs
    adj_rec = ggraph.adj_from_lam(u, lam0.mean(0).astype(np.float64))
    adj = np.stack([a, adj_rec]).astype(np.float32)
    recon = model.run("recon", x=_b(x0))
    out = model.run("fusion", x=_b(x0), avail=_b(avail), adj=_b(adj), node_mask=_b(node_mask))
    logits = out["logits"][0]
    reg = out["reg"][0] if man.has_regression else None
    probs = softmax_t(logits, row_temperatures(man.by_avail, avail, man.bits))
    recon = {k: v[0] for k, v in recon.items()}
    recon_raw = {m: gdata.destandardise(recon[m][:n], *man.stats[m]) for m in man.modalities}
    rec.update(x0=x0, lam0=lam0, adj_fusion=adj, recon=recon, recon_raw=recon_raw,
               logits=logits, probs=probs, reg=reg)
    return dict(logits=logits[:n], probs=probs[:n], reg=None if reg is None else reg[:n, 0])
