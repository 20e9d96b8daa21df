"""Export the five GSDNet parts to ONNX (opset 17, symbolic batch and window) and write
manifest.toml.

Owns: the I/O names and shapes of docs/DESIGN.md "ONNX parts" for the model's M modalities
(inputs / outputs named after them, slot order canonical) and K classes (`reg` only with a
regression head), the op allow-list check (plain ops that both onnxruntime and tract run), and
the manifest writer (hand-written TOML; `[modalities]` holds the feature sizes, `[dims]`
window / latent / k / buckets, `[normalisation]` the present modalities).

Every part has two symbolic axes: dim_param "batch" on axis 0 of every input and output
(`t` is ["batch"]) and "window" on every W axis (lam_t / lam_obs / s_phi's score have none); the
manifest writes them as strings, e.g. `{ name = "text", shape = ["batch", "window", 100] }`.
A part run at [B, N] (N <= W) gives, on the valid rows, the numbers of [1, W] with the same
valid rows when the padded rows are zero and node_mask 0 there (the model is masked
everywhere). `[dims] buckets`: the window sizes the runtime runs at (powers of two from 8
below W, then W).
    python3 -m gsdnet_torch.export CHECKPOINT.pt models/gsdnet-mosi
    python3 -m gsdnet_torch.export --reexport models/gsdnet-mosi
The second form reads the folder's model.pt (dict(state, cfg, info), a checkpoint's format),
rewrites only the .onnx files, the `[parts.*]` tables and `[dims]` of the existing manifest,
and leaves every other table's text as it is (no training, no metrics run).
"""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from gsdnet_torch.model import GSDNet
from gsdnet_torch.selection import sel_rates
from gsdnet_ref.tomlw import write_toml

OPSET = 17
ALLOWED_OPS = {
    "MatMul", "Gemm", "Add", "Sub", "Mul", "Div", "Relu", "Tanh", "Sigmoid", "Softmax", "Exp",
    "Log", "Sin", "Cos", "Sqrt", "Concat", "Reshape", "Transpose", "Unsqueeze", "Squeeze",
    "ReduceSum", "ReduceMean", "Constant", "Gather", "Slice", "Max", "Clip", "Identity", "Split",
    "Shape",   # the encoders' positional embedding: pos[:W] of the symbolic window W
}
BATCH, WINDOW = "batch", "window"   # the dim_params of the symbolic axes
EXAMPLE_BATCH = 2                   # traced at B = 2 (not 1), so nothing is fixed to one row


class _Part(nn.Module):
    """Wrapper fixing argument order; `fn` maps the named inputs to the outputs."""

    def __init__(self, fn, owner):
        super().__init__()
        self.owner, self.fn = owner, fn

    def forward(self, *xs):
        return self.fn(*xs)


def model_modalities(cfg: dict) -> list:
    """[(name, size)] of the model's modality slots (defaults: CMU-MOSI's three)."""
    names = cfg.get("modalities", ("text", "audio", "visual"))
    return list(zip(names, cfg.get("dims", (100, 73, 100))))


def window_buckets(width: int) -> list:
    """The window sizes the runtime runs at: the powers of two from 8 below W, then W."""
    out, b = [], 8
    while b < width:
        out.append(b)
        b *= 2
    return out + [width]


def dims_table(cfg: dict) -> dict:
    return dict(window=cfg["width"], latent=cfg["d"], k=cfg["k"],
                buckets=window_buckets(cfg["width"]))


def part_specs(model: GSDNet):
    """name -> (fn, owner, inputs, outputs), each [(name, shape)] with the symbolic axes as
    the strings BATCH / WINDOW."""
    c = model.cfg
    b, w, d, k = BATCH, WINDOW, c["d"], c["k"]
    mods = model_modalities(c)
    m, n_cls = len(mods), c.get("n_classes", 2)
    enc = model.encoders
    feats = [(name, [b, w, size]) for name, size in mods]
    fusion_out = [("logits", [b, w, n_cls])]
    if c.get("regression", True):
        fusion = (lambda *a: model.fuse(*a), model)
        fusion_out.append(("reg", [b, w, 1]))
    else:
        fusion = (lambda *a: model.fuse(*a)[0], model)
    return {
        "encoders": (lambda *xs: enc(*xs), enc, feats, [("h", [b, m, w, d])]),
        "s_theta": (lambda *a: model.s_theta(*a), model.s_theta,
                    [("x_t", [b, m, w, d]), ("t", [b]), ("cond", [b, m, w, d]),
                     ("avail", [b, w, m]), ("adj_t", [b, m, w, w]), ("node_mask", [b, w])],
                    [("score", [b, m, w, d])]),
        "s_phi": (lambda *a: model.s_phi(*a), model.s_phi,
                  [("lam_t", [b, m, k]), ("t", [b]), ("lam_obs", [b, m, k]), ("u", [b, w, k]),
                   ("cond", [b, m, w, d]), ("avail", [b, w, m]), ("node_mask", [b, w])],
                  [("score", [b, m, k])]),
        "recon": (lambda x: model.recon(x), model.recon, [("x", [b, m, w, d])], feats),
        "fusion": fusion + ([("x", [b, m, w, d]), ("avail", [b, w, m]), ("adj", [b, 2, w, w]),
                             ("node_mask", [b, w])], fusion_out),
    }


def concrete(shape, batch: int, window: int) -> list:
    """A manifest / spec shape with the symbolic axes set to `batch` / `window`."""
    return [batch if s == BATCH else window if s == WINDOW else s for s in shape]


def _example(shape, width):
    s = concrete(shape, EXAMPLE_BATCH, width)
    if shape == [BATCH]:   # t
        return torch.linspace(0.3, 0.7, EXAMPLE_BATCH)
    return torch.rand(*s) * 0.5 + 0.25


def _onnx_shape(value) -> list:
    return [d.dim_param if d.HasField("dim_param") else d.dim_value
            for d in value.type.tensor_type.shape.dim]


def export_part(name, spec, folder: Path, width: int) -> Path:
    fn, owner, ins, outs = spec
    path = folder / f"{name}.onnx"
    args = tuple(_example(s, width) for _, s in ins)
    axes = {n: {i: s for i, s in enumerate(shape) if isinstance(s, str)}
            for n, shape in ins + outs}
    torch.onnx.export(_Part(fn, owner).eval(), args, str(path), opset_version=OPSET,
                      input_names=[n for n, _ in ins], output_names=[n for n, _ in outs],
                      dynamic_axes=axes, dynamo=False, do_constant_folding=True)
    m = onnx.load(str(path))
    got = [(i.name, _onnx_shape(i)) for i in m.graph.input]
    if got != [(n, s) for n, s in ins]:
        raise RuntimeError(f"{name}: inputs {got}, expected {ins}")
    if [o.name for o in m.graph.output] != [n for n, _ in outs]:
        raise RuntimeError(f"{name}: outputs {[o.name for o in m.graph.output]}, "
                           f"expected {[n for n, _ in outs]}")
    # the tracer names some static output dims symbolically (e.g. after a -1 reshape): declare
    # the contract's shapes, then check them on a run at two batch / window sizes
    for o, (_, shape) in zip(m.graph.output, outs):
        o.type.tensor_type.ClearField("shape")
        dims = o.type.tensor_type.shape.dim
        for s in shape:
            dim = dims.add()
            if isinstance(s, str):
                dim.dim_param = s
            else:
                dim.dim_value = s
    onnx.checker.check_model(m)
    bad = {n.op_type for n in m.graph.node} - ALLOWED_OPS
    if bad:
        raise RuntimeError(f"{name}: ops outside the allow-list: {sorted(bad)}")
    onnx.save(m, str(path))
    _check_run(name, path, ins, outs, width)
    return path


def _check_run(name, path: Path, ins, outs, width: int) -> None:
    """The part runs in onnxruntime at [1, W] and at [3, a smaller bucket] with the outputs'
    declared shapes."""
    import onnxruntime as ort
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for b, w in ((1, width), (3, window_buckets(width)[0] if width > 8 else max(1, width // 2))):
        rs = np.random.default_rng(0)
        feed = {n: rs.uniform(0.25, 0.75, concrete(s, b, w)).astype(np.float32) for n, s in ins}
        got = [list(o.shape) for o in sess.run(None, feed)]
        want = [concrete(s, b, w) for _, s in outs]
        if got != want:
            raise RuntimeError(f"{name}: at batch {b}, window {w} outputs {got}, expected {want}")


def export_parts(model: GSDNet, folder: Path) -> dict:
    """Writes the five .onnx files; returns their `[parts.*]` manifest tables."""
    model.eval()
    tables = {}
    with torch.no_grad():
        for name, spec in part_specs(model).items():
            path = export_part(name, spec, folder, model.cfg["width"])
            tables[f"parts.{name}"] = dict(
                file=path.name, sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
                inputs=[dict(name=n, shape=s) for n, s in spec[2]],
                outputs=[dict(name=n, shape=s) for n, s in spec[3]])
    return tables


def onnx_val_metrics(folder: Path, val_dir: Path) -> dict:
    """Val accuracy (acc2 for a binary label with regression) / weighted F1 / MAE (regression
    only) of the exported parts through the ONNX reference (gsdnet completion, mask seeds 0-2,
    DESIGN.md noise keys): the numbers `gsdnet eval` must reproduce."""
    from gsdnet_ref.evaluate import evaluate
    res = evaluate(folder, val_dir, completions=("gsdnet",))
    out = {"protocol": "gsdnet_ref.evaluate, completion gsdnet, mask seeds 0-2, split val"}
    for r in res["results"]:
        tag = f"rate_{r['missing_rate']:.1f}".replace(".", "_") if r["pattern"] is None \
            else f"pattern_{r['pattern']}"
        if "acc2" in r:
            out[f"val_acc2_{tag}"] = round(r["acc2"], 4)
        else:
            out[f"val_acc_{tag}"] = round(r["accuracy"], 4)
        out[f"val_f1_{tag}"] = round(r["f1_weighted"], 4)
        if "mae" in r:
            out[f"val_mae_{tag}"] = round(r["mae"], 4)
    return out


# The deployed integrator: the fewest PF-ODE Heun steps within 0.5 points of 100 Euler-Maruyama
# steps on val/ at rates 0.3 and 0.7 on the model before the conversation prior; with the prior no
# Heun row meets that rule, which sits at the comparison's noise floor (research/sampler_table.py,
# docs/results/history.md "Sampler"). Training's own
# --steps (the torch EM sampler the fusion is fine-tuned on) is recorded in [training].
DEPLOY_SAMPLER, DEPLOY_STEPS = "pf_ode_heun_inpaint", 3

# Text views computed by a frontend the runtime runs on the transcript (`train.py --text-view`):
# the manifest's `[frontends.text]` dir, relative to the model folder (docs/DESIGN.md).
TEXT_FRONTENDS = {"minilm": "../frontends/all-minilm-l6-v2"}


def export_model(model: GSDNet, info: dict, folder: Path, argv) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    model.eval()
    a, c = info["args"], model.cfg
    tables = {
        "model": dict(name=folder.name, version="0.1.0",
                      classes=list(info.get("classes", ["negative", "positive"])),
                      has_regression=bool(c.get("regression", True))),
        "modalities": dict(model_modalities(c)),
    }
    if a.get("text_view") in TEXT_FRONTENDS:
        tables["frontends.text"] = dict(kind="sentence-encoder", dir=TEXT_FRONTENDS[a["text_view"]])
    tables.update({
        "dims": dims_table(c),
        "graph": dict(window_same=a["window_same"], window_other=a["window_other"]),
        "sde": dict(sigma_x=c["sigma_x"], sigma_lambda=c["sigma_l"], eps=a["eps"],
                    steps=DEPLOY_STEPS, sampler=DEPLOY_SAMPLER),
        "normalisation": {},
    })
    for m, (mean, std) in info["stats"].items():
        tables["normalisation"][f"{m}_mean"] = [float(x) for x in mean]
        tables["normalisation"][f"{m}_std"] = [float(x) for x in std]
    tables.update(export_parts(model, folder))
    tables["training"] = dict(command="python3 -m gsdnet_torch.train " + " ".join(argv),
                              seed=a["seed"], epochs=a["epochs"], ft_epochs=a["ft_epochs"],
                              best_epoch=info["best_epoch"],
                              ft_best_epoch=-1 if info["ft_best_epoch"] is None
                              else info["ft_best_epoch"],
                              fine_tune_sampler="euler_maruyama_inpaint",
                              fine_tune_steps=a["steps"],
                              data_sha256=info["data_sha256"])
    if info.get("feature_files"):   # the split files of a view other than `m.f32`
        tables["training"].update(feature_files=dict(info["feature_files"]))
    if info.get("prior"):   # the conversation prior inside fusion.onnx, chosen on val
        tables["training"].update(prior_gain=info["prior"]["gain"],
                                  prior_temp=info["prior"]["temp"])
    if info.get("layout", "cmu-mosi") != "cmu-mosi":   # CMU-MOSI's table stays as it was
        tables["training"].update(layout=info["layout"], selection_metric=a["sel_metric"],
                                  selection_rates=list(sel_rates(a)),
                                  prior_form="softmax" if c.get("n_classes", 2) > 2
                                  else "tanh")
    (folder / "manifest.toml").write_text(write_toml(tables))
    tables["metrics"] = onnx_val_metrics(folder, Path(a["data"]) / "val")
    (folder / "manifest.toml").write_text(write_toml(tables))
    torch.save(dict(state=model.state_dict(), cfg=model.cfg, info=info), folder / "model.pt")


def _sections(text: str) -> list:
    """[(table name or None for the preamble, text)] of a manifest, each section's text from
    its header line up to the next header (trailing blank lines included)."""
    out, name, buf = [], None, []
    for line in text.splitlines(keepends=True):
        st = line.strip()
        if st.startswith("[") and st.endswith("]") and not st.startswith("[["):
            out.append((name, "".join(buf)))
            name, buf = st[1:-1].strip(), []
        buf.append(line)
    out.append((name, "".join(buf)))
    return out


def _section_text(name: str, body: dict, old: str) -> str:
    """`[name]` written by write_toml, ending in the old section's trailing blank lines."""
    new = write_toml({name: body}).rstrip("\n")
    return new + old[len(old.rstrip("\n")):] if old else new + "\n\n"


def load_model(path) -> tuple:
    ckpt = torch.load(path, weights_only=False)
    model = GSDNet(**ckpt["cfg"])
    model.load_state_dict(ckpt["state"])
    return model.eval(), ckpt


def reexport(folder: Path) -> None:
    """Re-exports the parts of a model folder from its model.pt: rewrites the .onnx files,
    the `[parts.*]` tables and `[dims]` (window / latent / k checked against the checkpoint,
    other keys kept, buckets set) and keeps every other table's text byte for byte."""
    import tomllib
    folder = Path(folder)
    model, _ = load_model(folder / "model.pt")
    mpath = folder / "manifest.toml"
    text = mpath.read_text()
    old = tomllib.loads(text)
    dims = dict(old.get("dims", {}))
    for key, want in (("window", "width"), ("latent", "d"), ("k", "k")):
        if key in dims and dims[key] != model.cfg[want]:
            raise RuntimeError(f"[dims] {key} = {dims[key]}, model.pt has {model.cfg[want]}")
    dims.update(dims_table(model.cfg))
    parts = export_parts(model, folder)
    secs = _sections(text)
    names = [n for n, _ in secs]
    missing = [p for p in parts if p not in names]
    if "dims" not in names or missing:
        raise RuntimeError(f"{mpath}: no [dims] or no {missing}")
    out = []
    for n, body in secs:
        if n == "dims":
            body = _section_text(n, dims, body)
        elif n in parts:
            body = _section_text(n, parts[n], body)
        out.append(body)
    new_text = "".join(out)
    new = tomllib.loads(new_text)
    for key in set(old) | set(new):
        if key not in ("dims", "parts") and old.get(key) != new.get(key):
            raise RuntimeError(f"re-export changed [{key}]")
    if set(old.get("parts", {})) != set(new["parts"]):
        raise RuntimeError("re-export changed the set of parts")
    mpath.write_text(new_text)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--reexport":
        reexport(Path(sys.argv[2]))
        return
    if len(sys.argv) != 3 or sys.argv[1].startswith("-"):
        sys.exit(__doc__)
    model, ckpt = load_model(sys.argv[1])
    export_model(model, ckpt["info"], Path(sys.argv[2]), ckpt["info"].get("argv", []))


if __name__ == "__main__":
    main()
